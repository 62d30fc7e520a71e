"""SIGINT and SIGTERM: one way to stop, whatever orch is doing when the signal arrives.

`take_over` (the `orch` entry point) makes both signals raise `Interrupted` while orch starts up
and plans, so every phase unwinds through the same `except`. Inside `deferred()` (a build, from
taking the workdir to the last record of the run) a signal is only recorded: the runner looks at
`requested()` between steps and, while its event loop runs, a `forwarding` hook cancels the
running steps. Once the run is recorded, `quiet()` ignores signals, so the exit code is the
build's, until `resume()` (`orch watch` goes on after a build). A `held()` block (an atomic
write) postpones the signal to its end, so no temp file is left. Only the first signal raises; a
second one during the cleanup it started is ignored.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130
"""The exit code of an interrupted command."""
REDELIVERY_S = 0.001
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. Not an Exception, so no `except Exception` swallows it, and not
    a KeyboardInterrupt, which click would turn into 'Aborted!' and exit 1."""


class _State:
    received: int | None = None
    """The first signal since the state was reset."""
    raised = False
    deferring = 0
    quiet = False
    hook: Callable[[], object] | None = None


def _handle(signum: int, frame: FrameType | None) -> None:
    """The handler of both signals (it runs in the main thread, between two bytecodes)."""
    if _State.received is None:
        _State.received = signum
    if _State.hook is not None:
        _State.hook()
    else:
        _raise_once()


def _raise_once(*_: object) -> None:
    """Raise `Interrupted` for a recorded signal, unless deferred, quiet or done already."""
    if _State.received is None or _State.raised or _State.quiet or _State.deferring:
        return
    _State.raised = True
    raise Interrupted(_State.received)


def take_over() -> None:
    """For the `orch` process: route both signals to orch's handler (main thread only).

    A handler runs between any two bytecodes, so `Interrupted` may land in a weakref callback
    or a `__del__`, where Python prints it and drops it: then it is raised again a moment
    later, from wherever the main thread is by then."""
    install()
    signal.signal(signal.SIGALRM, _raise_once)
    dropped = sys.unraisablehook

    def redeliver(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):
            dropped(unraisable)
            return
        _State.raised = False
        signal.setitimer(signal.ITIMER_REAL, REDELIVERY_S)

    sys.unraisablehook = redeliver


def install() -> dict[int, Handler]:
    """Route SIGINT and SIGTERM to orch's handler; the handlers it replaced.

    Only the main thread may; elsewhere nothing changes (no signal reaches other threads)."""
    previous: dict[int, Handler] = {}
    try:
        for sig in SIGNALS:
            previous[sig] = signal.signal(sig, _handle)
    except ValueError:
        pass
    return previous


def _restore(previous: dict[int, Handler]) -> None:
    for sig, handler in previous.items():
        if handler is not None:
            signal.signal(sig, handler)


def requested() -> bool:
    """Whether SIGINT or SIGTERM arrived."""
    return _State.received is not None


def check() -> None:
    """Raise `Interrupted` now if a signal arrived and none was raised yet."""
    _raise_once()


@contextmanager
def deferred() -> Iterator[None]:
    """Within: a signal is only recorded (see `requested`).

    A signal that arrived before and was not raised yet stays recorded; one that was raised and
    handled, or a finished build's, is forgotten. The handlers are installed for the block and
    the previous ones put back after it, so a library caller gets what `orch` does."""
    if _State.raised or _State.quiet:
        _State.received, _State.raised, _State.quiet = None, False, False
    _State.deferring += 1
    previous = install()
    try:
        yield
    finally:
        _State.deferring -= 1
        _restore(previous)


@contextmanager
def held() -> Iterator[None]:
    """Within: a signal waits for the block to end, then raises as it would have.

    Outside the main thread this changes nothing: signals are only handled in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
        _raise_once()


@contextmanager
def forwarding(hook: Callable[[], object]) -> Iterator[None]:
    """Within: a signal calls `hook` (it must be safe to call from a signal handler)."""
    _State.hook = hook
    try:
        if requested():
            hook()
        yield
    finally:
        _State.hook = None


def quiet() -> None:
    """From now on a signal is only recorded: what it could stop is done (until `deferred`)."""
    _State.quiet = True


def resume() -> None:
    """After a build, for a command that goes on (`orch watch`): signals raise again, and one
    that arrived since the build began raises now."""
    _State.quiet = False
    _raise_once()


def ignore() -> None:
    """Ignore the signals from now on, for a process on its way out: while Python shuts down it
    puts back the default handlers it replaced (not an ignored one), and SIGTERM would kill."""
    quiet()
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig in (*SIGNALS, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)

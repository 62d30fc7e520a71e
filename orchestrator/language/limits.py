"""Limits on one template rendering: time, output size, and the size of what `*` and `**` build.

A careless or hostile template (`{{ ([1] * 10**9) | length }}`, loops nested over large ranges)
fails with a located error instead of hanging orch or eating the machine's memory:

- `ORCH_TEMPLATE_TIMEOUT_S` (default 30): seconds one rendering may take;
- `ORCH_TEMPLATE_MAX_BYTES` (default 64 MiB): characters one rendering may produce, and the size
  a repeated string or list (`'x' * n`, `[0] * n`) may reach before it is built;
- an exponent above 10,000 (`10 ** 100000`) is refused before it is computed.

The time limit counts the CPU time orch spends (a virtual interval timer, `SIGVTALRM`, which no
other part of orch uses), so a runaway loop stops while a rendering that waits on a file does
not; it applies where rendering runs in the main thread (everywhere orch renders today).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from orchestrator.core.errors import TemplateError, UsageError

MAX_EXPONENT = 10_000


@dataclass(frozen=True)
class Limits:
    """How long one rendering may take and how much it may produce."""

    timeout_s: float = 30.0
    max_bytes: int = 64 * 2**20

    @classmethod
    def from_environment(cls) -> Limits:
        """The limits `ORCH_TEMPLATE_TIMEOUT_S` and `ORCH_TEMPLATE_MAX_BYTES` set, else defaults."""
        default = cls()
        return cls(
            _positive("ORCH_TEMPLATE_TIMEOUT_S", float, default.timeout_s),
            _positive("ORCH_TEMPLATE_MAX_BYTES", int, default.max_bytes),
        )

    def check_binop(self, operator: str, left: Any, right: Any) -> None:
        """Refuse `seq * n` larger than the output limit and `n ** big` before they are built."""
        if operator == "**":
            if _whole(right) and abs(right) > MAX_EXPONENT and _whole(left) and abs(left) > 1:
                raise TemplateError(f"the exponent {right} is too large (at most {MAX_EXPONENT})")
            return
        for sequence, times in ((left, right), (right, left)):
            repeated = isinstance(sequence, str | list | tuple) and _whole(times)
            if repeated and len(sequence) * times > self.max_bytes:
                raise TemplateError(
                    f"repeating {type(sequence).__name__} {times} times goes past the limit"
                    f" of {self.max_bytes} (ORCH_TEMPLATE_MAX_BYTES)"
                )

    def joined(self, chunks: Iterable[str]) -> str:
        """The rendered text from Jinja's chunks, stopped once it passes the size limit."""
        parts, size = [], 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_bytes:
                raise TemplateError(
                    f"the template renders more than {self.max_bytes} characters"
                    " (ORCH_TEMPLATE_MAX_BYTES)"
                )
            parts.append(chunk)
        return "".join(parts)


class _TimedOut(Exception):
    """Raised into a rendering when its time is up."""


_active = threading.local()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise TemplateError in the block if it runs longer than `seconds` (main thread only;
    a rendering inside another keeps the outer one's deadline)."""
    if getattr(_active, "on", False) or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        if getattr(_active, "on", False):
            raise _TimedOut

    previous = signal.signal(signal.SIGVTALRM, expire)
    _active.on = True
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    except _TimedOut:
        raise TemplateError(
            f"the template took longer than {seconds:g} s (ORCH_TEMPLATE_TIMEOUT_S)"
        ) from None
    finally:
        _active.on = False
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(variable: str, kind: type[float] | type[int], default: Any) -> Any:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise UsageError(f"{variable} must be a positive {kind.__name__}, not '{text}'")
    return value

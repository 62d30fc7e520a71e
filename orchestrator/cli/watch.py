"""`orch watch`: build, then build again each time a file the build reads changes.

One thread does everything. watchfiles' Rust watcher collects changes in a thread of its own
from the moment it is created, during builds too; after each build the loop asks it what
changed, so changes made while a build runs give exactly one build after it, never two builds
at once. A batch of changes ends once no new one came for `STEP_MS` (at most `DEBOUNCE_MS`
after the first): a burst of saves is one build. Only changes the `WatchSet` covers count, and
it leaves out everything a build writes. It is computed again after each build.

A pipeline that cannot be loaded is reported and the pipeline file stays watched; SIGINT and
SIGTERM stop the loop (a running build is cancelled as `orch build` cancels it) with exit 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.core import interrupt
from orchestrator.core.errors import OrchError, PipelineError, UsageError
from orchestrator.record.status import JobStatus

if TYPE_CHECKING:
    from watchfiles._rust_notify import RustNotify

    from orchestrator.engine.build import Report, Request
    from orchestrator.engine.watchset import WatchSet

EXIT_STOPPED = 0
"""The exit code of a watch stopped by Ctrl-C or SIGTERM: its normal end, as for watchexec."""
DEBOUNCE_MS = 1600
STEP_MS = 50
POLL_DELAY_MS = 300


class Watcher:
    """watchfiles' Rust watcher over the folders holding a watch set, recursively."""

    def __init__(self, roots: list[Path]) -> None:
        from watchfiles._rust_notify import RustNotify

        self.roots = roots
        paths = [str(root) for root in roots]
        polling = _force_polling()
        self._notify: RustNotify = RustNotify(paths, False, polling, POLL_DELAY_MS, True, True)

    def changes(self, timeout_ms: int = 0) -> set[str]:
        """The paths changed since the last call, once a batch is complete (empty after
        `timeout_ms`; 0 waits for one); `Interrupted` when a signal arrived."""
        found = self._notify.watch(DEBOUNCE_MS, STEP_MS, timeout_ms, _Signalled())
        if found in ("signal", "stop") or interrupt.requested():
            raise interrupt.Interrupted()
        if isinstance(found, str):
            return set()
        return {path for _, path in found}

    def close(self) -> None:
        self._notify.close()


def _force_polling() -> bool:
    """Whether `WATCHFILES_FORCE_POLLING` asks to poll (for file systems that send no events,
    such as some network and container mounts), as watchfiles reads it."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    return value.lower() not in ("", "false", "disable", "disabled")


class _Signalled:
    """Stops a wait once SIGINT or SIGTERM arrived, even one only recorded."""

    def is_set(self) -> bool:
        return interrupt.requested()


def watch(request: Request, build: Callable[[Request], Report]) -> int:
    """Build with `build`, then again after each change to what the build reads, until a
    signal; the exit code."""
    from orchestrator.engine.watchset import WatchSet

    watched = _watch_set(request, WatchSet.of_pipeline(request.pipeline))
    watcher = Watcher(watched.roots())
    try:
        first = True
        while True:
            _build_once(request, build, first=first)
            first = False
            watched = _watch_set(request, watched)
            watcher, changed = _follow(watcher, watched)
            click.echo("watching for changes (Ctrl-C stops)")
            click.echo(_changed_line(changed or _wait(watcher, watched)))
    except (interrupt.Interrupted, KeyboardInterrupt):
        return EXIT_STOPPED
    finally:
        watcher.close()


def _build_once(request: Request, build: Callable[[Request], Report], *, first: bool) -> None:
    """One build; an error is said and watching goes on, but for a wrong command line (or a
    missing pipeline file) on the first build. `Interrupted` when a signal stopped it."""
    try:
        report = build(request)
    except (UsageError, PipelineError) as exc:
        if first and (isinstance(exc, UsageError) or not request.pipeline.is_file()):
            raise
        _say_error(exc)
    except OrchError as exc:
        _say_error(exc)
    else:
        if report.status == JobStatus.CANCELLED:
            raise interrupt.Interrupted()
    interrupt.resume()


def _say_error(exc: OrchError) -> None:
    from orchestrator.record.masking import Masker

    click.echo(Masker.from_environment().text(exc.render()), err=True)


def _watch_set(request: Request, previous: WatchSet) -> WatchSet:
    """What to watch now; while the pipeline cannot be loaded (the build said why), what was
    watched before, with the pipeline file."""
    from orchestrator.engine.watchset import watch_set

    try:
        return watch_set(request)
    except OrchError:
        return previous.with_pipeline(request.pipeline)


def _follow(watcher: Watcher, watched: WatchSet) -> tuple[Watcher, list[str]]:
    """A watcher over the watch set's folders (the same one while they are the same), and the
    changes the one it replaces saw since it last looked."""
    roots = watched.roots()
    if roots == watcher.roots:
        return watcher, []
    following = Watcher(roots)  # watching before the old one stops: no change is missed
    try:
        seen = watcher.changes(timeout_ms=1)
    except BaseException:
        following.close()
        raise
    finally:
        watcher.close()  # closing twice is harmless
    return following, sorted(path for path in seen if watched.covers(path))


def _wait(watcher: Watcher, watched: WatchSet) -> list[str]:
    """The watched paths in the next batch of changes that holds any."""
    while True:
        changed = sorted(path for path in watcher.changes() if watched.covers(path))
        if changed:
            return changed


def _changed_line(paths: list[str]) -> str:
    """`changed: FILE`, or `changed: FILE and N more`, the file relative to `.`."""
    shown = os.path.relpath(paths[0], Path.cwd().resolve())
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    return f"changed: {shown}{more}"

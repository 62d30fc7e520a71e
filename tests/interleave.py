"""Acting at an exact moment of a build, as a step running alongside could: a Python audit hook
runs a test's action when orch is about to make a given system call (``os.remove``,
``os.rmdir``, ``tempfile.mkstemp``, ...), in orch's own process and thread.

Nothing of orch is replaced: the call then goes ahead on whatever the action left on disk.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Action = Callable[[], None]
_armed: list[tuple[str, Callable[[tuple[Any, ...]], bool], Action]] = []
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _armed or event != _armed[0][0]:
        return
    _, when, action = _armed[0]
    if when(args):
        _armed.pop(0)  # before acting: the action's own calls raise audit events too
        action()


@contextmanager
def before(event: str, when: Callable[[tuple[Any, ...]], bool], action: Action) -> Iterator[None]:
    """Run `action` once, just before the first audit `event` whose arguments satisfy `when`."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)  # audit hooks cannot be removed: one for the whole session
        _installed = True
    _armed.append((event, when, action))
    try:
        yield
    finally:
        _armed.clear()


def named(name: str) -> Callable[[tuple[Any, ...]], bool]:
    """Whether an event's first argument (a path) ends with the file name `name`."""
    return lambda args: bool(args) and Path(str(args[0])).name == name


def swap_for_link(folder: Path, target: Path, keep: Path) -> Action:
    """An action moving `folder` to `keep` and putting a symlink to `target` in its place."""

    def swap() -> None:
        folder.rename(keep)
        folder.symlink_to(target, target_is_directory=True)

    return swap

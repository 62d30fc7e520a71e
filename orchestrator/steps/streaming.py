"""A step log followed while its command runs (`orch build -v`): each line, once complete, goes
to a listener.

The command keeps writing straight into its log, as it always does, so what it sees (its
standard streams, their order, a background process outliving it) does not change; the log is
read from where the step began it every `POLL_S` until the command ends, then to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

POLL_S = 0.05
_CHUNK = 1 << 16

LineListener = Callable[[str], None]
"""Given each line of a step's output as it is written (without its newline)."""


class _Follower:
    """Reads what was added to a file since the last read and hands on its complete lines."""

    def __init__(self, path: Path, start: int, listener: LineListener) -> None:
        self.path = path
        self.offset = start
        self.listener = listener
        self.partial = b""

    def read(self) -> None:
        """Hand on the lines completed since the last read."""
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                while chunk := log.read(_CHUNK):
                    self.offset += len(chunk)
                    self._split(chunk)
        except OSError:
            return

    def _split(self, chunk: bytes) -> None:
        *complete, self.partial = (self.partial + chunk).split(b"\n")
        for line in complete:
            self._hand_on(line)

    def finish(self) -> None:
        """Read to the end, and hand on a last line that has no newline."""
        self.read()
        if self.partial:
            self._hand_on(self.partial)
            self.partial = b""

    def _hand_on(self, line: bytes) -> None:
        self.listener(line.decode("utf-8", errors="replace").rstrip("\r"))

    async def poll(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(POLL_S)


@contextlib.asynccontextmanager
async def following(path: Path, start: int, listener: LineListener | None) -> AsyncIterator[None]:
    """While inside, hand `listener` each line written to `path` after byte `start`; every
    line is handed on by the time it exits. Without a listener, nothing is read."""
    if listener is None:
        yield
        return
    follower = _Follower(path, start, listener)
    task = asyncio.create_task(follower.poll())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        follower.finish()

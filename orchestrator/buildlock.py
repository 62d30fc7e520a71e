"""One build per workdir at a time: an exclusive lock on `.orch/build.lock` naming its holder.

The lock is an `flock`, so the kernel releases it when the holder exits, even by kill -9; the
file's content (the holder's pid) is only there to tell the next build who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import OrchError, io_failure


class BuildLocked(OrchError):
    """Another build holds the workdir."""


class BuildLock:
    """Held for the duration of a build; a second holder fails fast."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> BuildLock:
        with io_failure("take the build lock", self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BuildLocked(
                f"another build is running in {self.path.parent.parent} (pid {holder});"
                " wait for it to finish"
            ) from None
        self._fd = fd
        with contextlib.suppress(OSError):  # the pid only informs; the flock is what counts
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

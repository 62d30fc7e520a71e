"""One build per workdir at a time: an exclusive `flock` on the workdir folder itself.

The kernel releases a `flock` when its holder exits, even by kill -9. It is taken on the
workdir rather than on a file under `.orch/`, so deleting `.orch` during a build (by hand, by
`git clean -fdx`, by a step) cannot let a second build in beside the first. The holder's pid and
job id are written to `.orch/build.lock` (`<pid> <job id>`) only to tell the next build who
holds the workdir, and `orch tail -f` which run is live.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from orchestrator.core.errors import OrchError, io_failure

_UNLOCKABLE_FOLDER = (errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.ENOTSUP)


class BuildLocked(OrchError):
    """Another build holds the workdir."""


class BuildLock:
    """Held for the duration of a build; a second holder fails fast.

    `path` is the holder file, `.orch/build.lock`; its folder's parent is the workdir.
    """

    def __init__(self, path: Path, job_id: str = "") -> None:
        self.path = path
        self.job_id = job_id
        self.workdir = path.parent.parent
        self._fds: list[int] = []

    def __enter__(self) -> BuildLock:
        with io_failure("take the build lock", self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            holder = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._fds.append(holder)
            try:
                self._take(holder)
            except BaseException:
                self._release()
                raise
        with contextlib.suppress(OSError):  # the pid only informs; the flock is what counts
            os.ftruncate(holder, 0)
            os.write(holder, f"{os.getpid()} {self.job_id}".rstrip().encode() + b"\n")
        return self

    def _take(self, holder: int) -> None:
        """Lock the workdir folder, or the holder file where folders cannot be locked (some
        network file systems; there, deleting `.orch` mid-build is not guarded against)."""
        folder = os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds.append(folder)
        try:
            _lock(folder)
        except BlockingIOError:
            raise self._held(holder) from None
        except OSError as exc:
            if exc.errno not in _UNLOCKABLE_FOLDER:
                raise
            try:
                _lock(holder)
            except BlockingIOError:
                raise self._held(holder) from None

    def _held(self, holder: int) -> BuildLocked:
        held = os.read(holder, 64).decode(errors="replace").split()
        pid = held[0] if held else "unknown"
        return BuildLocked(
            f"another build is running in {self.workdir} (pid {pid}); wait for it to finish"
        )

    def _release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._fds:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fds[0], 0)
            self._release()


def _lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

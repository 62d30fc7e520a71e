"""The lock journal `.<lock name>.journal`, next to the lock: the entries of the steps a build
finished, appended as they finish, until the build writes the lock file once at its end.

Each finished step (or each group of steps finished together) is one append of its lock
blocks (`lockfile.render_entry`, each ending with its check) and one `fdatasync`; the file
starts with `HEADER`. The build folds the journal into the lock file when it ends (or is
cancelled) and removes it. A build killed before that leaves it behind: whoever reads the
lock reads the journal too (`lockfile.read_lock`), later entries winning, and the next build
folds it in before it appends anything. It is read as untrusted: reading stops at the first
block that is cut short or fails its check, so a torn last append is ignored.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

HEADER = "# orch lock journal, version 2: folded into the lock file by the next build\n"


def journal_path(lock_file: Path) -> Path:
    """`pipelines/notes_app.lock` → `pipelines/.notes_app.lock.journal`."""
    return lock_file.with_name(f".{lock_file.name}.journal")


def read_journal(path: Path) -> str | None:
    """The journal's blocks, as text, up to its last complete line; None if there is none
    or it is not a journal."""
    try:
        data = path.read_bytes()
    except OSError:  # absent, or unreadable: the steps it records simply run again
        return None
    text = data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace")
    if not text.startswith(HEADER):
        return None
    return text[len(HEADER) :]


class Journal:
    """Appends blocks to one journal, durably; the file is started afresh by the first
    append, so whatever a previous build left must be folded into the lock before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def append(self, text: str) -> None:
        """Append `text` and wait until it is on disk."""
        if self._fd is None:
            self._fd = self._start()
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(self._fd, data) :]
        os.fdatasync(self._fd)

    def _start(self) -> int:
        """A new, empty journal (but for its header) whose name is on disk."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o666)
        try:
            os.write(fd, HEADER.encode())
            os.fsync(fd)
            folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def remove(self) -> None:
        """Once the lock file holds every entry: close and delete the journal (a journal
        left behind by a failure here only repeats entries of the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

"""Which paths under watched folders changed since the last look: Linux inotify via ctypes.

`Monitor.touched()` drains the kernel's queue without blocking and names each file created,
written, removed or renamed in a watched folder, and each watched folder whose entries changed.
It answers None (anything may have changed) when events were lost: the queue overflowed, or a
watched folder was removed or moved (its folders are then watched afresh); and from the first
folder that cannot be watched for want of watches on. Where inotify is missing (not Linux, no
free instance) `open_monitor` gives None and callers compare everything.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path

_MODIFY, _CLOSE_WRITE, _MOVED_FROM, _MOVED_TO = 0x2, 0x8, 0x40, 0x80
_CREATE, _DELETE, _DELETE_SELF, _MOVE_SELF = 0x100, 0x200, 0x400, 0x800
_Q_OVERFLOW, _IGNORED, _ONLYDIR, _DONT_FOLLOW = 0x4000, 0x8000, 0x01000000, 0x02000000
_ENTRIES = _MOVED_FROM | _MOVED_TO | _CREATE | _DELETE
_LOST = _Q_OVERFLOW | _IGNORED | _DELETE_SELF | _MOVE_SELF
_MASK = _MODIFY | _CLOSE_WRITE | _ENTRIES | _DELETE_SELF | _MOVE_SELF | _ONLYDIR | _DONT_FOLLOW
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


class Monitor:
    """One inotify instance watching folders of a workdir (paths relative to it)."""

    def __init__(self, libc: ctypes.CDLL, fd: int, root: Path) -> None:
        self._libc = libc
        self._fd = fd
        self._root = root
        self._folders: dict[int, str] = {}
        self._watched: set[str] = set()
        self._lost = False
        self._exhausted = False

    def watch(self, folder: str) -> None:
        """Watch a folder ("" for the workdir); one that is missing holds nothing to watch."""
        if folder in self._watched:
            return
        self._watched.add(folder)
        path = os.fsencode(self._root / folder)
        wd = self._libc.inotify_add_watch(self._fd, path, _MASK)
        if wd >= 0:
            self._folders[wd] = folder
        elif ctypes.get_errno() not in (errno.ENOENT, errno.ENOTDIR):
            self._exhausted = True  # no watch left (ENOSPC): every look answers None

    def touched(self) -> set[str] | None:
        """The paths changed since the last look, or None if some changes went unseen."""
        found: set[str] = set()
        for wd, mask, name in self._events():
            folder = self._folders.get(wd)
            if mask & _LOST:
                self._lost = True
            elif folder is not None:
                found.add(f"{folder}/{name}" if folder else name)
                if mask & _ENTRIES:
                    found.add(folder)
        if self._exhausted:
            return None
        if not self._lost:
            return found
        self._rewatch()
        return None

    def _events(self) -> list[tuple[int, int, str]]:
        events: list[tuple[int, int, str]] = []
        while True:
            try:
                buffer = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return events
            offset = 0
            while offset < len(buffer):
                wd, mask, _, size = _HEADER.unpack_from(buffer, offset)
                offset += _HEADER.size
                name = os.fsdecode(buffer[offset : offset + size].rstrip(b"\0"))
                offset += size
                events.append((wd, mask, name))

    def _rewatch(self) -> None:
        """Watch every folder afresh (a folder may have been replaced by a new one)."""
        watched, self._watched, self._lost = self._watched, set(), False
        for wd in self._folders:
            self._libc.inotify_rm_watch(self._fd, wd)
        self._folders = {}
        self._events()  # drop the events of the old watches
        for folder in sorted(watched):
            self.watch(folder)

    def close(self) -> None:
        """Release the instance."""
        os.close(self._fd)


def open_monitor(root: Path) -> Monitor | None:
    """A monitor for folders under `root`, or None where inotify is not available (not Linux,
    or the user's instances are used up)."""
    if os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    return Monitor(libc, fd, root) if fd >= 0 else None

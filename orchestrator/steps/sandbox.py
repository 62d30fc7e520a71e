"""`--sandbox`: a shell step may write only beneath the folders it is given, with Linux Landlock.

orch builds a Landlock ruleset that handles every right that changes the file system (writing,
truncating, creating, removing, linking and renaming files and folders) and grants them beneath
the given folders, plus writing to the given files. Reading and executing stay allowed
everywhere. The ruleset is built in orch; the step's process applies it to itself between fork
and exec (`Restriction.apply`, two system calls prepared before the fork), after setting
no_new_privs, and the restriction holds for the shell and everything it starts.

Landlock grants by hierarchy: a folder given grants every file beneath it. The kernel's Landlock
is called directly through ctypes (system calls 444-446, the same number on every
architecture); needing ABI 3 (Linux 6.2) means truncation is covered too.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from orchestrator.core.errors import UsageError

MIN_ABI = 3
"""Landlock ABI 3 (Linux 6.2) handles truncation; 2 handles linking and renaming across
folders (before it those are always refused)."""

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_WRITE_FILE, _REMOVE_DIR, _REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_MAKE_CHAR, _MAKE_DIR, _MAKE_REG, _MAKE_SOCK = 1 << 6, 1 << 7, 1 << 8, 1 << 9
_MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM, _REFER, _TRUNCATE = 1 << 10, 1 << 11, 1 << 12, 1 << 13, 1 << 14
_FILE_RIGHTS = _WRITE_FILE | _TRUNCATE
_FOLDER_RIGHTS = (
    _FILE_RIGHTS | _REMOVE_DIR | _REMOVE_FILE | _MAKE_DIR | _MAKE_REG | _MAKE_SOCK | _MAKE_FIFO
)
_FOLDER_RIGHTS |= _MAKE_SYM | _REFER
_HANDLED = _FOLDER_RIGHTS | _MAKE_CHAR | _MAKE_BLOCK

DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
"""Files every sandboxed step may write to."""
SHARED_MEMORY = "/dev/shm"
"""Where POSIX shared memory and semaphores live (Python's multiprocessing uses it)."""


class SandboxUnavailable(UsageError):
    """`--sandbox` was asked for where Landlock cannot be used."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version; SandboxUnavailable if there is none to use."""
    if sys.platform != "linux":
        raise SandboxUnavailable("--sandbox needs Linux (Landlock); this is " + sys.platform)
    version = _libc().syscall(
        ctypes.c_long(_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1)
    )
    if version < 0:
        code = ctypes.get_errno()
        why = {
            errno.ENOSYS: "this kernel has no Landlock (Linux 5.13 or later builds it in)",
            errno.EOPNOTSUPP: "Landlock is disabled in this kernel (see the lsm= boot option)",
        }.get(code, f"Landlock cannot be used: {os.strerror(code)}")
        raise SandboxUnavailable(f"--sandbox: {why}")
    if version < MIN_ABI:
        raise SandboxUnavailable(
            f"--sandbox needs Landlock ABI {MIN_ABI} (Linux 6.2 or later);"
            f" this kernel has ABI {version}"
        )
    return int(version)


class Restriction:
    """A Landlock ruleset granting writes beneath `folders` and to `files`, for one child.

    Paths that do not exist are left out. `apply` is the child's `preexec_fn`: it only makes
    two system calls through functions looked up here, so it takes no lock a thread of orch
    could hold at the fork.
    """

    def __init__(self, folders: Iterable[Path], files: Iterable[Path]) -> None:
        libc = _libc()
        self._syscall = libc.syscall
        self._prctl = libc.prctl
        attr = _RulesetAttr(_HANDLED)
        self._fd = self._call(_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
        try:
            for folder in folders:
                self._grant(folder, _FOLDER_RIGHTS)
            for file in files:
                self._grant(file, _FILE_RIGHTS)
        except BaseException:
            os.close(self._fd)
            raise

    def _call(self, number: int, *args: object) -> int:
        result = int(self._syscall(ctypes.c_long(number), *args))
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"Landlock system call {number}: {os.strerror(code)}")
        return result

    def _grant(self, path: Path, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            rule = _PathBeneathAttr(rights, fd)
            self._call(_ADD_RULE, self._fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        finally:
            os.close(fd)

    def apply(self) -> None:
        """In the child, before exec: no new privileges, then the ruleset for good."""
        if self._prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if self._syscall(ctypes.c_long(_RESTRICT_SELF), self._fd, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")

    def close(self) -> None:
        """Release the ruleset (the child keeps its restriction)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Restriction:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def restriction(folders: Iterable[Path], files: Iterable[Path]) -> Restriction:
    """The ruleset of one sandboxed command: the given folders and files, the devices every
    command may write to, and the shared-memory folder."""
    devices = (Path(device) for device in DEVICES)
    return Restriction([*folders, Path(SHARED_MEMORY)], [*files, *devices])

"""The processes of running shell steps, recorded so that a build killed by `kill -9` can
have the next one stop them.

Before a shell step starts, it is recorded in `.orch/processes/<token>` (an empty file: its name
is the record), a random token that
its process gets in its environment (`ORCH_STEP_TOKEN`) and passes on to every process it
starts; the record goes when the step ends. The next build finds the live processes that carry
a recorded token (in `/proc/<pid>/environ`) and stops their process groups; a token names one
step process for good, so a reused pid is never mistaken for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

TOKEN_VARIABLE = "ORCH_STEP_TOKEN"
"""Set in every shell step's environment to the token its record is named by."""
_TOKEN = re.compile(r"[0-9a-f]{16}")
GRACE_S = 2.0
GONE_S = 10.0
POLL_S = 0.01


def record(folder: Path) -> str:
    """Before a step process starts: record it under a new token, which the caller puts in the
    process's environment as `TOKEN_VARIABLE`; the token."""
    token = os.urandom(8).hex()
    with contextlib.suppress(OSError):  # best effort: the step runs anyway
        _create(folder / token)
    return token


def _create(path: Path) -> None:
    """An empty record (only its name is read back, so a torn one cannot mislead)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        os.close(os.open(path, flags, 0o644))
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, flags, 0o644))


def forget(folder: Path, token: str) -> None:
    """The step process recorded under `token` ended: drop its record."""
    (folder / token).unlink(missing_ok=True)


def stop_groups(folder: Path) -> int:
    """Stop the process groups of every live process that carries a recorded token; how many.
    Every record goes."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    tokens = {name for name in names if _TOKEN.fullmatch(name)}
    groups = _groups_carrying(tokens) if tokens else set()
    for pgid in sorted(groups):
        _stop(pgid)
    for name in names:
        (folder / name).unlink(missing_ok=True)
    return len(groups)


def _groups_carrying(tokens: set[str]) -> set[int]:
    """The process groups of the live processes whose environment holds one of `tokens`."""
    wanted = {f"{TOKEN_VARIABLE}={token}".encode() for token in tokens}
    groups = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environment = handle.read().split(b"\0")
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if fields[0] not in ("Z", "X") and not wanted.isdisjoint(environment):
            groups.add(int(fields[2]))
    return groups


def _stop(pgid: int) -> None:
    """SIGTERM the group, SIGKILL it if it outlives the grace period; wait until it is gone."""
    _signal(pgid, signal.SIGTERM)
    if _wait_gone(pgid, GRACE_S):
        return
    _signal(pgid, signal.SIGKILL)
    _wait_gone(pgid, GONE_S)


def _signal(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(pgid: int, timeout: float) -> bool:
    """Whether every live process of the group exits within `timeout`."""
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group is alive (zombies do not count)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False

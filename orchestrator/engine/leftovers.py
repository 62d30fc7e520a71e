"""What a build killed by `kill -9` leaves behind, cleared by the next build.

Before a shell step starts, it is recorded in `.orch/processes/<token>`, a random token that
its process gets in its environment (`ORCH_STEP_TOKEN`) and passes on to every process it
starts; the record goes when the step ends. `.orch/building` marks a build in progress. The next
build, holding the build lock, finds the live processes that carry a recorded token (in
`/proc/<pid>/environ`) and stops their process groups; a token names one step process for good,
so a reused pid is never mistaken for it. If the marker says the last build was killed, it also
removes orch's own temp files (`.NAME.XXXXXXXX.tmp`) beside the outputs, beside the lock file
and under `.orch/`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.plan.compiled import Plan

PROCESSES = "processes"
MARKER = "building"
TOKEN_VARIABLE = "ORCH_STEP_TOKEN"
"""Set in every shell step's environment to the token its record is named by."""
_TOKEN = re.compile(r"[0-9a-f]{16}")
TEMP_NAME = re.compile(r"\A\..+\.[a-z0-9_]{8}\.tmp\Z", re.DOTALL)
"""The names of orch's temp files: `tempfile.mkstemp` and `filestore._temp_in` suffixes, after
the target's name (cut short when long: `filestore.temp_stem`)."""
GRACE_S = 2.0
GONE_S = 10.0
POLL_S = 0.01


def record(state: Path) -> str:
    """Before a step process starts: record it under a new token, which the caller puts in the
    process's environment as `TOKEN_VARIABLE`; the token."""
    from orchestrator.store.filestore import atomic_write

    token = os.urandom(8).hex()
    folder = state / PROCESSES
    with contextlib.suppress(OSError):  # best effort: the step runs anyway
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / token, f"{os.getpid()}\n".encode(), durable=False)
    return token


def forget(state: Path, token: str) -> None:
    """The step process recorded under `token` ended: drop its record."""
    (state / PROCESSES / token).unlink(missing_ok=True)


def begin(state: Path) -> bool:
    """Mark a build in progress; whether the previous one was killed (its marker is there)."""
    marker = state / MARKER
    killed = marker.exists()
    marker.write_bytes(b"")
    return killed


def end(state: Path) -> None:
    """The build ends normally: drop the marker."""
    (state / MARKER).unlink(missing_ok=True)


def stop_groups(state: Path) -> int:
    """Stop the process groups of every live process that carries a recorded token; how many.
    Every record goes."""
    folder = state / PROCESSES
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


def remove_temp_files(flat: Iterable[Path], deep: Iterable[Path]) -> int:
    """Remove orch's temp files in the `flat` folders and anywhere under the `deep` ones."""
    removed = 0
    for path in _temp_files(flat, deep):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def _temp_files(flat: Iterable[Path], deep: Iterable[Path]) -> Iterator[Path]:
    """The regular files named as orch's temp files; symlinks are never followed."""
    seen: set[Path] = set()
    folders = [(folder, False) for folder in flat] + [(folder, True) for folder in deep]
    for folder, recursive in folders:
        for path in _listing(folder, recursive):
            if path not in seen and TEMP_NAME.match(path.name):
                seen.add(path)
                yield path


def _listing(folder: Path, recursive: bool) -> Iterator[Path]:
    """The regular files in `folder` (and below it if `recursive`), never through a symlink."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for root, folders, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink() and path.is_file():
                yield path
        if not recursive:
            folders.clear()


def clear(state: Path, plan: Plan, lock_file: Path) -> tuple[str, ...]:
    """Start a build (holding the build lock): clear what a killed build left; what it did."""
    killed = begin(state)
    stopped = stop_groups(state)
    removed = remove_temp_files(*_folders(state, plan, lock_file)) if killed else 0
    if not (stopped or removed):
        return ()
    return (
        f"the previous build was killed: stopped {stopped} leftover step process group(s),"
        f" removed {removed} temp file(s)",
    )


def _folders(state: Path, plan: Plan, lock_file: Path) -> tuple[list[Path], list[Path]]:
    """Where orch writes temp files: beside outputs and the lock file, in output folders
    (all the way down), under `.orch/`; paths leading outside the workdir are left out."""
    from orchestrator.store.filestore import WriteRefused, confined

    workdir = Path(plan.workdir)
    flat, deep = [lock_file.parent], [state]
    for step in plan.steps.values():
        for output in step.outputs:
            with contextlib.suppress(WriteRefused):
                target = confined(workdir, output.rstrip("/"))
                if output.endswith("/"):
                    deep.append(target)
                else:
                    flat.append(target.parent)
    return flat, deep

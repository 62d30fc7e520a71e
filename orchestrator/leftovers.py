"""What a build killed by `kill -9` leaves behind, cleared by the next build.

A running step's process group is recorded in `.orch/processes/<pgid>` (its leader's pid and
start time) while it runs; `.orch/building` marks a build in progress. The next build, holding
`.orch/build.lock`, stops every recorded group whose leader still runs (same start time, so a
reused pid is left alone) and, if the marker says the last build was killed, removes orch's own
temp files (`.NAME.XXXXXXXX.tmp`) beside the outputs, beside the lock file and under `.orch/`.
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
    from .plan import Plan

PROCESSES = "processes"
MARKER = "building"
TEMP_NAME = re.compile(r"\A\..+\.[a-z0-9_]{8}\.tmp\Z", re.DOTALL)
"""The names of orch's temp files: `tempfile.mkstemp` and `filestore._temp_in` suffixes, after
the target's name (cut short when long: `filestore.temp_stem`)."""
GRACE_S = 2.0
GONE_S = 10.0
POLL_S = 0.01


def start_time(pid: int) -> str | None:
    """Field 22 of `/proc/<pid>/stat` (start time since boot), None if no such live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def record(state: Path, pid: int) -> None:
    """Note that the step process group led by `pid` is running."""
    from .filestore import atomic_write

    moment = start_time(pid)
    if moment is None:
        return
    folder = state / PROCESSES
    with contextlib.suppress(OSError):  # best effort: the step runs anyway
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / str(pid), f"{pid} {moment}\n".encode(), durable=False)


def forget(state: Path, pid: int) -> None:
    """The group led by `pid` ended: drop its record."""
    (state / PROCESSES / str(pid)).unlink(missing_ok=True)


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
    """Stop the recorded step groups whose leader still runs; how many. Every record goes."""
    folder = state / PROCESSES
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    stopped = 0
    for name in names:
        path = folder / name
        if name.isdigit() and _recorded_alive(path, int(name)):
            _stop(int(name))
            stopped += 1
        path.unlink(missing_ok=True)
    return stopped


def _recorded_alive(path: Path, pgid: int) -> bool:
    """Whether the record's leader is the same process, still running."""
    try:
        pid, moment = path.read_text().split()
    except (OSError, ValueError):
        return False
    return int(pid) == pgid and start_time(pgid) == moment


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
    from .filestore import WriteRefused, confined

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

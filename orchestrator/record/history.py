"""Past and live runs of a workdir, for `orch runs`, `orch show` and `orch tail`.

Runs live in `<workdir>/.orch/runs/<job_id>/` (see `runs`). This module lists them newest first,
resolves a RUN argument (a job id or a unique prefix of one), reads a manifest (rebuilding what
it can from the events when the run has not finished), reads and filters events, follows a live
build's events file; `history_text` renders them.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any

from orchestrator.core.errors import UsageError
from orchestrator.record import manifest, records
from orchestrator.record.events import Event
from orchestrator.record.runs import HISTORY, keep_runs, log_name
from orchestrator.record.status import JobStatus, Status
from orchestrator.store.layout import StateFolder

LEVELS = ("debug", "info", "warning", "error")
END_TYPES = frozenset(manifest.JOB_ENDS)
RUNNING = JobStatus.RUNNING
STEP_STATUSES = frozenset(status.value for status in Status)
_JOB_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


@dataclass(frozen=True)
class Run:
    """The folder of one run."""

    job_id: str
    path: Path

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    def log_file(self, step_id: str) -> Path:
        return self.path / "logs" / log_name(step_id)


def runs_folder(workdir: Path) -> Path:
    """Where a workdir keeps its runs."""
    return StateFolder(workdir).runs


# --------------------------------------------------------------------------- finding runs


def list_runs(workdir: Path) -> list[Run]:
    """The runs of a workdir, newest first.

    Job ids start with their UTC second; runs started within one second are ordered by the
    `started` time (milliseconds) in their manifests.
    """
    folder = runs_folder(workdir)
    if not folder.is_dir():
        return []
    runs = [Run(entry.name, entry) for entry in folder.iterdir() if entry.is_dir()]
    seconds = Counter(run.job_id[:16] for run in runs)

    def order(run: Run) -> tuple[str, str, str]:
        tied = seconds[run.job_id[:16]] > 1
        return run.job_id[:16], _started(run) if tied else "", run.job_id

    return sorted(runs, key=order, reverse=True)


def prune(workdir: Path, current: str) -> list[str]:
    """Remove the oldest run folders past `runs.keep_runs()` (never `current`); their ids."""
    import shutil

    old = [run for run in list_runs(workdir)[keep_runs() :] if run.job_id != current]
    for run in old:
        shutil.rmtree(run.path, ignore_errors=True)
    return [run.job_id for run in old]


def _started(run: Run) -> str:
    stored = _load_json(run.manifest_file)
    return str(stored.get("started") or "") if stored else ""


def resolve(workdir: Path, ref: str | None) -> Run:
    """The run a RUN argument names: a full job id, a unique prefix of one, or (None) the latest."""
    runs = list_runs(workdir)
    if not runs:
        raise UsageError(f"no runs yet in {runs_folder(workdir)}")
    if ref is None:
        return runs[0]
    matches = [run for run in runs if run.job_id == ref] or [
        run for run in runs if run.job_id.startswith(ref)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no run '{ref}' in {runs_folder(workdir)}; latest: {_names(runs)}")
    raise UsageError(f"run '{ref}' is ambiguous; it matches {_names(matches)}")


def _names(runs: list[Run], limit: int = 5) -> str:
    shown = ", ".join(run.job_id for run in runs[:limit])
    more = len(runs) - limit
    return shown + (f" and {more} more" if more > 0 else "")


# --------------------------------------------------------------------------- liveness


def build_running(workdir: Path) -> bool:
    """Whether a build holds the workdir: `.orch/build.lock` names a live process."""
    return _holder(workdir) is not None


def _holder(workdir: Path) -> tuple[int, str] | None:
    """The pid and job id (may be empty) `.orch/build.lock` names, if that process lives.

    Only the file is read; taking the lock to test it could make a starting build fail.
    """
    try:
        words = StateFolder(workdir).build_lock.read_text(encoding="utf-8").split()
    except OSError:
        return None
    if not words or not words[0].isdigit() or not _alive(int(words[0])):
        return None
    job_id = words[1] if len(words) > 1 and _JOB_ID.fullmatch(words[1]) else ""
    return int(words[0]), job_id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has exited


def live_job(workdir: Path, runs: list[Run] | None = None) -> str | None:
    """The job id of the build that holds the workdir, as its lock names it (a build of an
    older orch names none: then the newest run). `runs`: the workdir's runs, if listed."""
    holder = _holder(workdir)
    if holder is None:
        return None
    if holder[1]:
        return holder[1]
    newest = runs if runs is not None else list_runs(workdir)
    return newest[0].job_id if newest else None


def live_run(workdir: Path) -> Run | None:
    """The run of the build that holds the workdir (its folder may not exist yet)."""
    job_id = live_job(workdir)
    return None if job_id is None else Run(job_id, runs_folder(workdir) / job_id)


def next_live_run(workdir: Path, poll_s: float = 0.05) -> Run:
    """The run of the build that holds the workdir, waiting for one to start if none does."""
    while (run := live_run(workdir)) is None:
        time.sleep(poll_s)
    return run


def unchanged(workdir: Path, job_id: str) -> dict[str, Any] | None:
    """The history's summary of a build that changed nothing, if `job_id` was one."""
    return next((s for s in unchanged_runs(workdir) if s["job_id"] == job_id), None)


def is_live(workdir: Path, run: Run) -> bool:
    """Whether a build may still write to this run."""
    return live_job(workdir) == run.job_id


# --------------------------------------------------------------------------- manifests


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_manifest(run: Run) -> dict[str, Any]:
    """The run's manifest, every field checked. While it says `running` (a live build, or one
    that was killed), the steps, files and usage are rebuilt from the events written so far."""
    stored = manifest.load(run.job_id, _load_json(run.manifest_file))
    if stored.status != RUNNING:
        return stored.to_json()
    return manifest.replay(stored, read_events(run)).to_json()


def unchanged_runs(workdir: Path) -> list[dict[str, Any]]:
    """The builds that changed nothing (they have no run folder), from the run history, newest
    first, as manifests of their summary; a damaged line is left out."""
    try:
        raw = (runs_folder(workdir) / HISTORY).read_bytes()
    except OSError:
        return []
    found = [summary for line in raw.splitlines() if (summary := _unchanged(line)) is not None]
    return sorted(found, key=lambda summary: (summary["started"], summary["job_id"]), reverse=True)


def _unchanged(line: bytes) -> dict[str, Any] | None:
    """One line of the run history, every field checked; None when it is not one."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not _JOB_ID.fullmatch(str(data.get("job_id"))):
        return None
    counts = data.get("counts")
    if not isinstance(counts, dict) or any(
        type(n) is not int or n < 0 or k not in STEP_STATUSES for k, n in counts.items()
    ):
        return None
    texts = {key: records.text(data.get(key)) for key in ("pipeline", "started", "finished")}
    duration = records.number(data.get("duration_s"))
    if data.get("status") != JobStatus.SUCCEEDED or not texts["started"] or duration is None:
        return None
    return {
        "job_id": data["job_id"],
        "status": JobStatus.SUCCEEDED,
        **texts,
        "duration_s": duration,
        "counts": counts,
        "usage": {},
    }


# --------------------------------------------------------------------------- logs

TAIL_BYTES = 64 * 1024
"""How much of the end of a log `log_tail` reads."""


def log_tail(run: Run, step_id: str, count: int = 20) -> list[str] | None:
    """The last `count` lines of a step's log (read from its last 64 KiB); None without a log."""
    try:
        with run.log_file(step_id).open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read()
    except OSError:
        return None
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first line read is likely cut
    return lines[-count:]


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class EventFilter:
    """Which events `orch tail` shows: any of the type globs, any of the steps, a minimum level."""

    types: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    level: str = "debug"

    def __call__(self, event: Event) -> bool:
        kind = str(event.get("type", ""))
        if self.types and not any(fnmatchcase(kind, glob) for glob in self.types):
            return False
        if self.steps and event.get("step") not in self.steps:
            return False
        return severity(str(event.get("level", "info"))) >= severity(self.level)


def severity(level: str) -> int:
    """debug < info < warning < error; an unknown level counts as info."""
    return LEVELS.index(level) if level in LEVELS else LEVELS.index("info")


def _parse(line: bytes) -> Event | None:
    """An event from one complete line; None for a blank or damaged line."""
    try:
        return records.event(json.loads(line))
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True)
class EventLines:
    """The events of a run, and how many of its complete lines were not events."""

    events: list[Event]
    skipped: int = 0


def load_events(run: Run) -> EventLines:
    """The run's events so far; a last line still being written is not an event yet, and a
    damaged line is skipped (and counted)."""
    try:
        data = run.events_file.read_bytes()
    except OSError:
        return EventLines([])
    lines = [line for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]
    events = [event for line in lines if (event := _parse(line)) is not None]
    return EventLines(events, len(lines) - len(events))


def read_events(run: Run) -> list[Event]:
    """The run's events so far (damaged lines left out)."""
    return load_events(run).events


def follow(
    run: Run,
    still_writing: Callable[[], bool],
    poll_s: float = 0.05,
    quiet_s: float = 0.5,
) -> Iterator[Event]:
    """The run's events, then each one a build appends, up to the job's end event.

    Stops early when the file has not grown for `quiet_s` and `still_writing()` says that no
    build will add to it (it was killed); the caller tells by the last event's type.
    """
    pending, handle = b"", None
    quiet_since = time.monotonic()
    try:
        while True:
            handle = handle or _open(run.events_file)
            chunk = handle.read() if handle else b""
            if chunk:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    event = _parse(line)
                    if event is not None:
                        yield event
                        if event.get("type") in END_TYPES:
                            return
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s and not still_writing():
                return
            else:
                time.sleep(poll_s)
    finally:
        if handle:
            handle.close()


def _open(path: Path) -> IO[bytes] | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None

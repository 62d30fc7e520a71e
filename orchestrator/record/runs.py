"""Run folders `<workdir>/.orch/runs/<job_id>/`: events, logs and the manifest of one build.

manifest.json  job id, pipeline, status, timings, per-step records, completed and pending
               steps, failures with their kind, provider calls, tokens and cost, and the
               files the build produced: the fold of the events (see `manifest`)
events.jsonl   see `events`
logs/<step>.log
"""

from __future__ import annotations

import errno
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.core.errors import io_failure
from orchestrator.store.layout import StateFolder

if TYPE_CHECKING:
    from orchestrator.record.manifest import Manifest


def new_job_id() -> str:
    """A sortable, unique job id: UTC time and a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


LOG_STEM_BYTES = 120
"""How much of a step id a log name keeps: with a hash and `.log`, well under 255 bytes."""


def log_name(step_id: str) -> str:
    """A step's log file name, unique per step id and a valid file name for any id.

    The id itself when it is a plain name; otherwise its plain characters, cut short, and a
    hash of the whole id (`lint@src_a.py-3f2a…`), so that `a b` and `a_b` keep apart.
    """
    safe = "".join(c if c.isalnum() or c in "._@-" else "_" for c in step_id)
    if safe == step_id and len(safe.encode()) <= LOG_STEM_BYTES and not safe.startswith("."):
        return f"{safe}.log"
    import hashlib

    from orchestrator.core.paths import cut

    short = cut(safe, LOG_STEM_BYTES)
    return f"{short}-{hashlib.sha256(step_id.encode()).hexdigest()[:12]}.log"


class RunFolder:
    """The folder of one run, made by `create` (a build that changes nothing makes none)."""

    def __init__(self, workdir: Path, job_id: str) -> None:
        self.workdir = workdir
        self.path = StateFolder(workdir).run(job_id)
        self.logs = self.path / "logs"
        self.events = self.path / "events.jsonl"
        self.manifest = self.path / "manifest.json"
        self.created = False

    def create(self) -> None:
        """Make the folder and its `logs/` (once)."""
        if not self.created:
            with io_failure("create the run folder", self.path):
                self.logs.mkdir(parents=True, exist_ok=True)
            self.created = True

    def log(self, step_id: str) -> Path:
        """The log file of a step (the folder is made if it is not yet)."""
        self.create()
        return self.logs / log_name(step_id)

    def write_manifest(self, manifest: Manifest) -> None:
        """Write manifest.json atomically (a record of the run, not state a build relies on)."""
        from orchestrator.store.filestore import atomic_write

        data = (json.dumps(manifest.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
        with io_failure("write the run manifest", self.manifest):
            try:
                atomic_write(self.manifest, data, durable=False)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or not _overwrite_in_place(self.manifest, data):
                    raise


def _overwrite_in_place(path: Path, data: bytes) -> bool:
    """On a full disk, rewrite `path` within the blocks it already holds; whether it fit.

    The run can so be closed even once a step has filled the disk.
    """
    try:
        if len(data) > path.stat().st_blocks * 512:
            return False
        with path.open("r+b") as handle:
            handle.write(data)
            handle.truncate()
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- history, pruning

HISTORY = "history.jsonl"
"""In the runs folder: one line per build that changed nothing (it has no run folder)."""
KEEP_RUNS = 50
"""Run folders kept by default (`ORCH_KEEP_RUNS`)."""


def record_unchanged(workdir: Path, manifest: Manifest) -> None:
    """Append the summary of a build that changed nothing to the runs folder's history, keeping
    its last `keep_runs()` lines."""
    line = {
        "job_id": manifest.job_id,
        "pipeline": manifest.pipeline,
        "status": manifest.status,
        "started": manifest.started,
        "finished": manifest.finished,
        "duration_s": manifest.duration_s,
        "counts": manifest.counts(),
    }
    folder = StateFolder(workdir).runs
    path = folder / HISTORY
    with io_failure("write the run history", path):
        folder.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(line, ensure_ascii=False) + "\n")
        if path.stat().st_size > 512 * keep_runs() * 2:  # trimmed now and then, not each time
            _trim(path, keep_runs())


def _trim(path: Path, keep: int) -> None:
    from orchestrator.store.filestore import atomic_write

    lines = path.read_bytes().splitlines(keepends=True)
    atomic_write(path, b"".join(lines[-keep:]), durable=False)


def keep_runs() -> int:
    """How many run folders to keep: `ORCH_KEEP_RUNS` if a positive number, else KEEP_RUNS."""
    import os

    value = os.environ.get("ORCH_KEEP_RUNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else KEEP_RUNS

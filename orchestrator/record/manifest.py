"""The manifest of a run as a fold over its events.

A build feeds each event it emits to `Manifest.apply`, and writes the manifest when the run
starts and ends; `orch show` rebuilds the manifest of a run that has not ended by applying the
events written so far (`replay`). One function decides what each event means, so the two agree.

Every value is checked as it is read (`records`): events read back from disk may be damaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.record import records
from orchestrator.record.events import Event
from orchestrator.record.status import COMPLETED, JobStatus, Reason, Status, Why

JOB_ENDS = {f"job.{status}": status for status in JobStatus if status != JobStatus.RUNNING}
"""The types of the job's end events, and the status each gives the run."""
SUCCEEDED_FIELDS = frozenset({"duration_s", "outputs"})
"""The fields of `step.succeeded` that are not what the step used (its `meta`)."""
CANCELLED_KIND = "cancelled"
"""The failure kind of a step that was cancelled: it did not fail."""


@dataclass
class StepRecord:
    """What happened to one step in a run."""

    status: str = Status.PENDING
    reasons: list[str] = field(default_factory=list)
    duration_s: float | None = None
    failure: dict[str, str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """The summary of a run: what its events said so far."""

    job_id: str
    pipeline: str = ""
    workdir: str = ""
    targets: list[str] = field(default_factory=list)
    status: str = JobStatus.RUNNING
    started: str = ""
    finished: str | None = None
    duration_s: float | None = None
    steps: dict[str, StepRecord] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    max_cost: float | None = None

    def apply(self, event: Event) -> None:
        """Bring the manifest up to date with one event."""
        kind, data = event.get("type", ""), event.get("data") or {}
        if kind == "job.started":
            self._start(event, data)
        elif kind == "job.replanned":
            for step_id in records.texts(data.get("selected")):
                self.steps.setdefault(step_id, StepRecord())
        elif kind in JOB_ENDS:
            self.status = JOB_ENDS[kind]
            self.finished = records.text(event.get("ts")) or None
            self.duration_s = records.number(data.get("duration_s"))
        elif kind in STEP_EVENTS and isinstance(event.get("step"), str):
            record = self.steps.setdefault(event["step"], StepRecord())
            self.files.update(_digests(data.get("outputs")))
            STEP_EVENTS[kind](record, data)

    def _start(self, event: Event, data: dict[str, Any]) -> None:
        """The job started: what it builds, where and when."""
        self.status = JobStatus.RUNNING
        self.started = records.text(event.get("ts")) or self.started
        self.pipeline = records.text(data.get("pipeline")) or self.pipeline
        self.workdir = records.text(data.get("workdir")) or self.workdir
        if isinstance(data.get("targets"), list):
            self.targets = records.texts(data["targets"])
        self.max_cost = records.number(data.get("max_cost"))
        for step_id in records.texts(data.get("selected")):
            self.steps.setdefault(step_id, StepRecord())

    def to_json(self) -> dict[str, Any]:
        """The manifest as written, with derived lists of completed, pending and failed steps."""
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "pipeline": self.pipeline,
            "workdir": self.workdir,
            "targets": self.targets,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "duration_s": self.duration_s,
            "steps": {step_id: vars(record) for step_id, record in self.steps.items()},
        }
        data["completed_steps"] = [s for s, r in self.steps.items() if r.status in COMPLETED]
        data["pending_steps"] = self.pending_steps()
        data["failures"] = [
            {"step": s, **r.failure} for s, r in self.steps.items() if r.failure is not None
        ]
        data["counts"] = self.counts()
        data["usage"] = self.usage()
        data["files"] = dict(sorted(self.files.items()))
        return data

    def counts(self) -> dict[str, int]:
        """How many steps have each status, by status."""
        return _counts(r.status for r in self.steps.values())

    def pending_steps(self) -> list[str]:
        """The steps not completed, in the order the run met them."""
        return [s for s, r in self.steps.items() if r.status not in COMPLETED]

    def usage(self) -> dict[str, Any]:
        """Provider calls, tokens and cost over the steps that ran, with the cost limit."""
        usage = _usage(r.meta for r in self.steps.values())
        if self.max_cost is not None:
            usage["max_cost"] = self.max_cost
        return usage


def replay(manifest: Manifest, events: Iterable[Event]) -> Manifest:
    """`manifest` brought up to date with `events`."""
    for event in events:
        manifest.apply(event)
    return manifest


# --------------------------------------------------------------------------- step events


def _started(record: StepRecord, data: dict[str, Any]) -> None:
    record.status = Status.RUNNING
    record.reasons = records.texts(data.get("reasons")) or record.reasons


def _succeeded(record: StepRecord, data: dict[str, Any]) -> None:
    record.status = Status.RAN
    record.duration_s = records.number(data.get("duration_s"))
    record.meta = records.meta({k: v for k, v in data.items() if k not in SUCCEEDED_FIELDS})


def _failed(record: StepRecord, data: dict[str, Any]) -> None:
    duration = records.number(data.get("duration_s"))
    record.duration_s = record.duration_s if duration is None else duration
    if data.get("kind") == CANCELLED_KIND:
        record.status = Status.CANCELLED
        return
    record.status = Status.FAILED
    record.failure = records.failure(data)
    record.meta = records.meta(data.get("meta"))


def _restored(record: StepRecord, data: dict[str, Any]) -> None:
    record.status = Status.RESTORED
    record.reasons = records.texts(data.get("reasons"))


def _skipped(record: StepRecord, data: dict[str, Any]) -> None:
    if data.get("reason") == Status.BLOCKED:
        record.status = Status.BLOCKED
        record.reasons = [Reason(Why.BLOCKED_BY, str(data.get("upstream")))]
    else:
        record.status, record.reasons = Status.UP_TO_DATE, []


STEP_EVENTS: dict[str, Callable[[StepRecord, dict[str, Any]], None]] = {
    "step.started": _started,
    "step.succeeded": _succeeded,
    "step.failed": _failed,
    "step.restored": _restored,
    "step.skipped": _skipped,
}
"""What each step event does to the step's record (its `outputs`, when given, go to files)."""


def _digests(value: Any) -> dict[str, str]:
    """The path → sha256 pairs of an event's `outputs` (none when it has none)."""
    if not isinstance(value, dict):
        return {}
    return {path: digest for path, digest in value.items() if isinstance(digest, str)}


# --------------------------------------------------------------------------- derived fields


def _counts(statuses: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def _usage(metas: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Provider calls, tokens and (where a price is known) cost over the steps that ran."""
    tokens = {"input": 0, "output": 0, "cached": 0}
    calls, cost, priced = 0, 0.0, False
    for meta in metas:
        calls += meta.get("calls", 0)
        for name, count in meta.get("tokens", {}).items():
            tokens[name] = tokens.get(name, 0) + count
        if "cost" in meta:
            cost, priced = cost + meta["cost"], True
    usage: dict[str, Any] = {"calls": calls, "tokens": tokens}
    if priced:
        usage["cost"] = round(cost, 10)
    return usage


# --------------------------------------------------------------------------- stored manifests


def load(job_id: str, data: Any) -> Manifest:
    """A manifest from stored data, every field checked (an empty one for anything else)."""
    data = data if isinstance(data, dict) else {}
    found = Manifest(
        job_id=records.text(data.get("job_id")) or job_id,
        pipeline=records.text(data.get("pipeline")),
        workdir=records.text(data.get("workdir")),
        targets=records.texts(data.get("targets")),
        status=records.text(data.get("status")) or JobStatus.RUNNING,
        started=records.text(data.get("started")),
        finished=records.text(data.get("finished")) or None,
        duration_s=records.number(data.get("duration_s")),
    )
    usage = data.get("usage")
    found.max_cost = records.number(usage.get("max_cost")) if isinstance(usage, dict) else None
    steps = data.get("steps")
    for step_id, raw in steps.items() if isinstance(steps, dict) else ():
        found.steps[step_id] = step_record(raw)
    found.files = _digests(data.get("files"))
    return found


def step_record(raw: Any) -> StepRecord:
    """A step's record, every field checked."""
    raw = raw if isinstance(raw, dict) else {}
    return StepRecord(
        status=records.text(raw.get("status")) or Status.PENDING,
        reasons=records.texts(raw.get("reasons")),
        duration_s=records.number(raw.get("duration_s")),
        failure=records.failure(raw.get("failure")),
        meta=records.meta(raw.get("meta")),
    )

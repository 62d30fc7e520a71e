"""The statuses a run records: each step's (`Status`) and the whole job's (`JobStatus`)."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A step's status in a build, as the manifest and the events spell it."""

    PENDING = "pending"
    UP_TO_DATE = "up-to-date"
    RESTORED = "restored"
    RAN = "ran"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    RUNNING = "running"
    """Started and not ended yet: only in a manifest rebuilt from the events of a live or
    killed run."""
    DEFERRED = "deferred"
    """Planned from another step's output, which that step changed: the build plans it again
    and builds it in its next round."""


SUCCESSES = frozenset({Status.UP_TO_DATE, Status.RESTORED, Status.RAN})
"""The statuses of a step that succeeded."""

COMPLETED = (Status.RAN, Status.RESTORED, Status.UP_TO_DATE)
"""The statuses of a manifest's completed steps, in the order the manifest lists them."""


class JobStatus(StrEnum):
    """A whole run's status: running until the job's end event says how it ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Why(StrEnum):
    """Why a step is not up to date (or is blocked): the code of a `Reason`."""

    NEVER_BUILT = "never built"
    OLDER_LOCK = "recorded by an older orch"
    FORCED = "forced (--force)"
    ALWAYS_RUN = "always_run"
    DEFINITION_CHANGED = "definition changed"
    INPUT_ADDED = "input added"
    INPUT_REMOVED = "input removed"
    INPUT_MODIFIED = "input modified"
    OUTPUT_MISSING = "output missing"
    OUTPUT_MODIFIED = "output modified"
    OUTPUT_ADDED = "output added"
    UPSTREAM_WILL_CHANGE = "upstream will change"
    KEY_CHANGED = "key changed"
    UPSTREAM_FAILED = "an upstream step failed"
    EXPANDS_AFTER = "expands after"
    BLOCKED_BY = "blocked by"


_TEXTS = {
    Why.OLDER_LOCK: "recorded by an older orch (lock version {subject}, keys of another format)",
    Why.BLOCKED_BY: "upstream step '{subject}' failed",
    Why.EXPANDS_AFTER: "planned from the output of '{subject}', which may change",
}


class Reason(str):
    """One reason, as the text orch prints and records, that also keeps its `code` and the
    `subject` it names (a path, a step, a lock version), as doit keeps its reasons."""

    code: Why
    subject: str | None

    def __new__(cls, code: Why, subject: str | None = None) -> Reason:
        plain = "{code}: {subject}" if subject is not None else "{code}"
        text = _TEXTS.get(code, plain).format(code=code.value, subject=subject)
        reason = super().__new__(cls, text)
        reason.code, reason.subject = code, subject
        return reason

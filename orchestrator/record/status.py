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

"""The rebuild decision: a pure function of a step's lock entry and its current hashes.

Reasons come in a fixed order — never built; definition changed; inputs added, removed or
modified; outputs missing, modified or added (a file in an output folder); upstream will
change — and `orch status`, `--dry-run` and
`orch build` all print the reasons this module gives, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple

from orchestrator.record.status import Reason, Why
from orchestrator.store.lockfile import LOCK_VERSION, LockEntry


class Action(StrEnum):
    """What the build does with a step."""

    UP_TO_DATE = "up-to-date"
    RUN = "run"
    RESTORE = "restore"
    BLOCKED = "blocked"


class Current(NamedTuple):
    """What a step looks like now: its key, definition hash and file hashes (None = missing)."""

    key: str
    definition: str
    inputs: Mapping[str, str | None]
    outputs: Mapping[str, str | None]
    cached: bool = False
    upstream_will_change: bool = False
    upstream_failed: bool = False


class Options(NamedTuple):
    """The build flags that bear on a decision."""

    force: bool = False
    always_run: bool = False
    use_cache: bool = True


class Decision(NamedTuple):
    """An action and the reasons for it, in the documented order."""

    action: Action
    reasons: tuple[Reason, ...] = ()


_DEFAULTS = Options()


def decide(entry: LockEntry | None, current: Current, options: Options | None = None) -> Decision:
    """Whether a step is up to date, can be restored from the cache, must run, or is blocked."""
    options = options or _DEFAULTS
    if current.upstream_failed:
        return Decision(Action.BLOCKED, (Reason(Why.UPSTREAM_FAILED),))
    reasons = _reasons(entry, current)
    if options.force:
        reasons = [Reason(Why.FORCED), *reasons]
    elif options.always_run:
        reasons = [Reason(Why.ALWAYS_RUN), *reasons]
    if not reasons:
        return Decision(Action.UP_TO_DATE)
    restorable = (
        current.cached
        and options.use_cache
        and not options.force
        and not options.always_run
        and not current.upstream_will_change
    )
    return Decision(Action.RESTORE if restorable else Action.RUN, tuple(reasons))


def _reasons(entry: LockEntry | None, current: Current) -> list[Reason]:
    if entry is None:
        return [Reason(Why.NEVER_BUILT)]
    if entry.version != LOCK_VERSION:
        return [Reason(Why.OLDER_LOCK, str(entry.version))]
    if _as_recorded(entry, current):
        return []
    reasons = []
    if entry.definition != current.definition:
        reasons.append(Reason(Why.DEFINITION_CHANGED))
    reasons += _input_changes(entry.inputs, current.inputs)
    reasons += _output_changes(entry.outputs, current.outputs)
    if current.upstream_will_change:
        reasons.append(Reason(Why.UPSTREAM_WILL_CHANGE))
    if not reasons and entry.key != current.key:
        reasons.append(Reason(Why.KEY_CHANGED))
    return reasons


def _as_recorded(entry: LockEntry, current: Current) -> bool:
    """Whether everything is as the entry records it (a recorded hash is never None, so equal
    mappings mean no file missing, added or changed): the common case, decided at once."""
    return (
        entry.key == current.key
        and entry.definition == current.definition
        and not current.upstream_will_change
        and entry.inputs == current.inputs
        and entry.outputs == current.outputs
    )


def _input_changes(recorded: Mapping[str, str], now: Mapping[str, str | None]) -> list[Reason]:
    present = {path: digest for path, digest in now.items() if digest is not None}
    added = [Reason(Why.INPUT_ADDED, p) for p in sorted(present.keys() - recorded.keys())]
    removed = [Reason(Why.INPUT_REMOVED, p) for p in sorted(recorded.keys() - present.keys())]
    modified = [
        Reason(Why.INPUT_MODIFIED, p)
        for p in sorted(recorded.keys() & present.keys())
        if recorded[p] != present[p]
    ]
    return [*added, *removed, *modified]


def _output_changes(recorded: Mapping[str, str], now: Mapping[str, str | None]) -> list[Reason]:
    """Outputs missing (recorded, or declared files: a lock entry cannot make a missing one
    up to date) or modified, and files added in an output folder (a fresh build would not
    have them)."""
    missing = [
        Reason(Why.OUTPUT_MISSING, p) for p in sorted(recorded.keys() | now) if now.get(p) is None
    ]
    added = [
        Reason(Why.OUTPUT_ADDED, p)
        for p in sorted(now.keys() - recorded.keys())
        if now[p] is not None
    ]
    modified = [
        Reason(Why.OUTPUT_MODIFIED, p)
        for p in sorted(recorded)
        if now.get(p) is not None and now[p] != recorded[p]
    ]
    return [*missing, *modified, *added]

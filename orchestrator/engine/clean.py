"""`orch clean`: remove the declared outputs of the named steps, keeping the cache.

Only the steps named are cleaned, never the steps they need. Bytes the lock file does not
record for an output (a hand edit) are kept in the cache first, as a build keeps them before
replacing them, with the command that brings them back. The lock file and the cache stay as
they are, so the next build restores what the cache holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from orchestrator.engine.build import Request, open_plan
from orchestrator.engine.buildlock import BuildLock
from orchestrator.engine.decide import Options
from orchestrator.engine.outputs import Keeper, Kept, KeptReason, clear, unrecorded
from orchestrator.engine.state import Workspace
from orchestrator.plan.compiled import Plan
from orchestrator.store.layout import StateFolder


class StepCleaned(NamedTuple):
    """What cleaning one step removed (or would remove)."""

    step: str
    removed: list[str]
    kept: list[Kept]
    """Hand edits among `removed`, kept in the cache first (with a dry run: that would be)."""
    restorable: bool
    """Whether the cache holds the step's result the lock file records, for the next build."""


class Cleaned(NamedTuple):
    """What `orch clean` removed (or would remove)."""

    steps: list[StepCleaned]
    """The steps that had outputs, in plan order."""
    unplanned: dict[str, tuple[str, ...]]
    """The groups named that are not planned yet, each with the steps it waits for: their
    steps are not known, so nothing of them is removed."""


def clean(request: Request, *, dry_run: bool = False) -> Cleaned:
    """Remove the outputs of the steps the targets name (every step when none); with
    `dry_run`, only say what would go (no build lock taken)."""
    plan, _ = open_plan(request)
    chosen = named_steps(plan, request.targets)
    unplanned = {t: plan.deferred[t] for t in request.targets if _unplanned(plan, t)}
    if dry_run:
        return Cleaned(_clean(plan, chosen, remove=False), unplanned)
    state = StateFolder(Path(plan.workdir))
    state.ensure()
    with BuildLock(state.build_lock):  # no build may write or record outputs meanwhile
        return Cleaned(_clean(plan, chosen, remove=True), unplanned)


def named_steps(plan: Plan, targets: Iterable[str]) -> list[str]:
    """The steps the targets name (steps, foreach groups, output paths), in plan order,
    without the steps they need; every step when none is named. A group not planned yet has
    no steps."""
    wanted = list(targets)
    if not wanted:
        return list(plan.steps)
    chosen: set[str] = set()
    for target in wanted:
        if not _unplanned(plan, target):
            chosen.update(plan.resolve(target))
    return [name for name in plan.steps if name in chosen]


def _unplanned(plan: Plan, target: str) -> bool:
    """Whether the target is a group not planned yet."""
    return target in plan.deferred and target not in plan.steps


def _clean(plan: Plan, chosen: list[str], *, remove: bool) -> list[StepCleaned]:
    workspace = Workspace(plan, Options())
    keeper = Keeper(workspace.cache, workspace.workdir, Path(plan.pipeline), Path.cwd())
    found = []
    for step_id in chosen:
        step = plan.steps[step_id]
        current = workspace.output_hashes(step)
        present = {path: digest for path, digest in current.items() if digest is not None}
        if not present:
            continue
        entry = workspace.entries.get(step_id)
        recorded = entry.outputs if entry is not None else {}
        edited = unrecorded(current, recorded)
        if remove:
            kept = keeper.keep(edited, recorded) if edited else []
            clear(workspace.workdir, step, sorted(present))
        else:
            kept = [_would_keep(keeper, path, present[path], recorded) for path in edited]
        restorable = (
            entry is not None and step.cache and workspace.cache.find(entry.key).result is not None
        )
        found.append(StepCleaned(step_id, sorted(present), kept, restorable))
    return found


def _would_keep(keeper: Keeper, path: str, digest: str, recorded: Mapping[str, str]) -> Kept:
    """What keeping the file would record, without keeping it."""
    size = (keeper.workdir / path).stat().st_size
    reason: KeptReason = "edited" if path in recorded else "unrecorded"
    return Kept(path, digest, size, reason, keeper.command(digest, path))

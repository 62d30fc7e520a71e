"""What a build knows about a workdir: lock entries, file hashes and the cache.

`Workspace.assess` gathers a step's current hashes and key and hands them, with its lock entry,
to the pure `planner.decide`; `orch build`, `--dry-run` and `orch status` all go through it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from orchestrator.core.paths import escape, excluded, is_dir, is_glob, selects, unescape
from orchestrator.engine.decide import Action, Current, Decision, Options, decide
from orchestrator.engine.outputs import declares
from orchestrator.plan.compiled import Plan, PlannedStep
from orchestrator.store.hashing import Hasher, StatCache, step_key
from orchestrator.store.layout import StateFolder
from orchestrator.store.lockfile import LockEntry, LockError, lock_path, read_lock

if TYPE_CHECKING:
    from orchestrator.store.cache import ActionResult, Cache
    from orchestrator.store.remote import RemoteCache


class Assessment(NamedTuple):
    """A step's decision together with the hashes it was made on."""

    step: PlannedStep
    decision: Decision
    key: str
    inputs: Mapping[str, str | None]
    outputs: Mapping[str, str | None]
    cached: ActionResult | None = None
    miss: str | None = None
    """Why the cache's record for the key could not be used (None: no record, or a hit)."""
    remote: bool = False
    """Whether the cached result came from the remote cache."""

    def entry(self, outputs: Mapping[str, str]) -> LockEntry:
        """The lock entry recording this step with the given outputs."""
        inputs = {path: digest for path, digest in self.inputs.items() if digest is not None}
        return LockEntry(self.key, self.step.definition, inputs, dict(outputs))


class Workspace:
    """Reads hashes through the stat cache, the lock file and the cache of one workdir."""

    def __init__(self, plan: Plan, options: Options, *, force: bool = False) -> None:
        self.plan = plan
        self.workdir = Path(plan.workdir)
        self.options = options
        self.lock_file = lock_path(Path(plan.pipeline))
        self.state = StateFolder(self.workdir)
        self.stat_cache = StatCache(self.state.stat_cache, root=self.workdir)
        self.hasher = Hasher(self.workdir, self.stat_cache)
        self.entries = _read_entries(self.lock_file, ignore_errors=force)
        self.forced: frozenset[str] = frozenset(plan.steps) if options.force else frozenset()
        """The steps `-B` runs whatever their state (all of them, unless targets narrow it)."""
        self.remote: RemoteCache | None = None
        """The shared remote cache a build asks on a local miss (`ORCH_REMOTE_CACHE`)."""
        self.peek_remote = False
        """Only read the remote's records, downloading nothing (`orch status --remote`)."""
        self._options = {
            (forced, always_run, cache): Options(
                force=forced,
                always_run=options.always_run or always_run,
                use_cache=options.use_cache and cache,
            )
            for forced in (False, True)
            for always_run in (False, True)
            for cache in (False, True)
        }

    def replanned(self, plan: Plan) -> Workspace:
        """This workspace for a new plan of the same pipeline, in the same build: the stat
        cache, the hashes and the lock entries carry over."""
        successor = copy.copy(self)
        successor.plan = plan
        return successor

    @cached_property
    def cache(self) -> Cache:
        """The content-addressed cache (loaded when a step is not up to date)."""
        from orchestrator.store.cache import Cache

        return Cache(self.state.cache)

    def output_hashes(self, step: PlannedStep) -> dict[str, str | None]:
        """The step's output files now (None = missing), without other steps' nested outputs."""
        exclude = (lambda path: not step.owns(path)) if step.nested else None
        return self.hasher.hashes([escape(path) for path in step.outputs], exclude)

    def still_holds(self, step: PlannedStep) -> bool:
        """Whether the files other steps wrote that planning `step` read hold the bytes they
        held then (always, for a step planned from no such file)."""
        if not step.expands:
            return True
        now = self.hasher.hashes([escape(path) for path, _ in step.expands])
        return all(now.get(path) == digest for path, digest in step.expands)

    def assess(
        self,
        step: PlannedStep,
        *,
        upstream_will_change: bool = False,
        overlay: Mapping[str, str | None] | None = None,
        honour_always_run: bool = True,
    ) -> Assessment:
        """Decide what to do with a step given the files as they are now.

        `overlay` gives files as predicted after upstream restores (None = removed); it lets
        `orch status` see through a restore to what the step will then read. Without
        `honour_always_run`, an always_run step is judged like any other.
        """
        inputs = self.hasher.hashes(step.inputs, _exclusion(step))
        if overlay:
            inputs = _overlaid(inputs, overlay, step)
        entry = self.entries.get(step.id)
        if entry is not None and entry.definition == step.definition and entry.inputs == inputs:
            key = entry.key  # the same definition and inputs give the same key
        else:
            key = step_key(step.kind, step.definition, inputs)
        outputs = self.output_hashes(step)
        forced = step.id in self.forced
        options = self._options[forced, step.always_run and honour_always_run, step.cache]
        current = Current(key, step.definition, inputs, outputs, False, upstream_will_change)
        decision = decide(entry, current, options)
        cached = miss = None
        remote = False
        if decision.action == Action.RUN and options.use_cache and not upstream_will_change:
            found = self.cache.find(key, functools.partial(declares, step))
            cached, miss = found.result, found.reason
            if cached is None and miss is None and self.remote is not None:
                look = self.remote.peek if self.peek_remote else self.remote.fetch
                cached = look(key, functools.partial(declares, step))
                remote = cached is not None
            if cached is not None:
                current = Current(key, step.definition, inputs, outputs, cached=True)
                decision = decide(entry, current, options)
        return Assessment(step, decision, key, inputs, outputs, cached, miss, remote)

    def predict(self, selected: list[str], *, honour_always_run: bool = True) -> list[Assessment]:
        """What a build of the selected steps would do, without doing it.

        A step after one that will run is predicted to run ("upstream will change"); one after
        a restore is judged on the restored files. Without `honour_always_run`, the prediction
        is what a build would do if no step were always_run: the work that is due regardless.
        """
        found: dict[str, Assessment] = {}
        overlay: dict[str, str | None] = {}
        for step_id in selected:
            step = self.plan.steps[step_id]
            changing = any(found[p].decision.action == Action.RUN for p in step.preds if p in found)
            assessment = self.assess(
                step,
                upstream_will_change=changing,
                overlay=overlay,
                honour_always_run=honour_always_run,
            )
            found[step_id] = assessment
            if assessment.decision.action == Action.RESTORE and assessment.cached is not None:
                overlay.update(dict.fromkeys(assessment.outputs))
                overlay.update(assessment.cached.outputs)
        return list(found.values())


def _exclusion(step: PlannedStep) -> Callable[[str], bool] | None:
    """What takes a file out of the step's glob and folder inputs (never a file it names)."""
    if not step.excludes:
        return None
    named = {unescape(path) for path in step.inputs if not (is_glob(path) or is_dir(path))}
    return lambda path: path not in named and excluded(step.excludes, path)


def _overlaid(
    inputs: dict[str, str | None], overlay: Mapping[str, str | None], step: PlannedStep
) -> dict[str, str | None]:
    """Input hashes with the predicted files under the declared inputs swapped in."""
    changed = dict(inputs)
    for path, digest in overlay.items():
        if selects(step.inputs, step.excludes, path):
            if digest is None:
                changed.pop(path, None)
            else:
                changed[path] = digest
    return dict(sorted(changed.items()))


def _read_entries(lock_file: Path, *, ignore_errors: bool) -> dict[str, LockEntry]:
    try:
        return read_lock(lock_file)
    except LockError:
        if ignore_errors:
            return {}
        raise

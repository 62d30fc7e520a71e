"""A step's files around the moment it runs: restored from the cache, hand edits kept, cleared
before a run as in a fresh build, hashed and stored in the cache after it."""

from __future__ import annotations

from collections.abc import Mapping, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import StepFailed, describe_os_error
from orchestrator.core.paths import escape, escapes_through_symlink, is_dir, is_within
from orchestrator.engine.outputs import Keeper, Kept, clear, unrecorded
from orchestrator.store.filestore import confined_unlink
from orchestrator.store.hashing import PathEscapes

if TYPE_CHECKING:
    from orchestrator.engine.state import Assessment, Workspace
    from orchestrator.plan.compiled import PlannedStep
    from orchestrator.record.events import EventLog


class StepFiles:
    """Moves the files of the steps of one build, reporting each change as an event."""

    def __init__(self, workspace: Workspace, events: EventLog, *, store: bool) -> None:
        self.workspace = workspace
        self.events = events
        self.store = store
        self._keeper: Keeper | None = None
        self._cwd = Path.cwd()

    def restore(self, assessment: Assessment) -> dict[str, str] | str:
        """Bring a step's outputs back from the cache: the outputs restored, or why it could
        not (a miss).

        Every object is checked before anything is written, and bytes orch did not record are
        kept before they are overwritten or removed.
        """
        step, result = assessment.step, assessment.cached
        assert result is not None
        cache, workdir = self.workspace.cache, self.workspace.workdir
        try:
            cache.check(result)
        except OSError as exc:
            return str(exc)
        hit = "cache.remote_hit" if assessment.remote else "cache.hit"
        self.events.emit(hit, step.id, key=assessment.key)
        replaced = {p: d for p, d in assessment.outputs.items() if result.outputs.get(p) != d}
        try:
            self.report_kept(step.id, self._keep(step, replaced))
            written = cache.write(result, workdir)
        except OSError as exc:
            return f"cannot restore: {exc}"
        for change in written:
            self.events.emit("file.written", step.id, **change.as_event_data())
        for stray in sorted(set(assessment.outputs) - set(result.outputs)):
            confined_unlink(workdir, stray)
            self.events.emit("file.removed", step.id, path=stray, reason="not in the cache entry")
        return dict(result.outputs)

    def clear(self, assessment: Assessment, orch_writes: tuple[str, ...]) -> list[Kept]:
        """Before a step runs: keep what orch did not record, then remove the files its command
        writes, so it runs as in a fresh build. Files orch writes itself (`orch_writes`) are
        replaced whole later, and left alone when unchanged. What it kept, to report."""
        step = assessment.step
        current = self.workspace.output_hashes(step)
        kept = self._keep(step, current)
        stale = [
            path
            for path, digest in current.items()
            if digest is not None and not any(is_within(path, out) for out in orch_writes)
        ]
        clear(self.workspace.workdir, step, stale)
        return kept

    def finish(self, assessment: Assessment, meta: Mapping[str, Any]) -> dict[str, str]:
        """Hash a finished step's outputs and keep them in the cache; its outputs."""
        step = assessment.step
        _check_outputs(self.workspace.workdir, step.outputs)
        hashes = self.workspace.output_hashes(step)
        missing = sorted(path for path, digest in hashes.items() if digest is None)
        if missing:
            raise StepFailed("missing_output", f"did not create its output file '{missing[0]}'")
        outputs = present(hashes)
        if self.store and step.cache:
            try:
                self.workspace.cache.store(assessment.key, self.workspace.workdir, outputs, meta)
            except OSError as exc:
                why = describe_os_error(exc, "store its outputs in the cache")
                raise StepFailed("io", why) from exc
        return outputs

    def drop_stale(self) -> None:
        """Remove the files the lock file records that no step of the plan declares any more
        (a step deleted, a row gone from a `foreach`, an output renamed), as a fresh build
        would not have them. A file whose bytes changed since (a hand edit) stays."""
        plan = self.workspace.plan
        declared = {output for step in plan.steps.values() for output in step.outputs}
        for step_id, entry in list(self.workspace.entries.items()):
            if step_id.partition("@")[0] in plan.deferred:
                continue
            for path, digest in sorted(entry.outputs.items()):
                if not _declared(declared, path) and self._unchanged(path, digest):
                    confined_unlink(self.workspace.workdir, path)
                    self.events.emit(
                        "file.removed", step_id, path=path, reason="no step declares it"
                    )

    def _unchanged(self, path: str, digest: str) -> bool:
        try:
            return self.workspace.hasher.hashes([escape(path)]).get(path) == digest
        except (OSError, PathEscapes):
            return False

    def _hand_edits(self) -> Keeper:
        """What keeps hand edits in this workdir's cache (created on first use)."""
        if self._keeper is None:
            workspace = self.workspace
            plan = Path(workspace.plan.pipeline)
            self._keeper = Keeper(workspace.cache, workspace.workdir, plan, self._cwd)
        return self._keeper

    def _keep(self, step: PlannedStep, current: Mapping[str, str | None]) -> list[Kept]:
        """Keep the present files among `current` whose bytes the lock file does not record."""
        entry = self.workspace.entries.get(step.id)
        recorded = entry.outputs if entry is not None else {}
        edited = unrecorded(current, recorded)
        return self._hand_edits().keep(edited, recorded) if edited else []

    def report_kept(self, step_id: str, kept: list[Kept]) -> None:
        """One `file.kept` event per hand edit kept."""
        for found in kept:
            self.events.emit("file.kept", step_id, "warning", **found.as_event_data())


def _declared(outputs: Set[str], path: str) -> bool:
    """Whether `path` is one of the declared `outputs`, or inside a declared output folder
    (one lookup per folder on its way, however many outputs there are)."""
    if path in outputs:
        return True
    parts = path.split("/")
    return any("/".join(parts[:depth]) + "/" in outputs for depth in range(1, len(parts)))


def present(hashes: Mapping[str, str | None]) -> dict[str, str]:
    """The hashes of the files that exist."""
    return {path: digest for path, digest in hashes.items() if digest is not None}


def _check_outputs(workdir: Path, outputs: tuple[str, ...]) -> None:
    """Fail unless every declared output exists, as a file or a folder, inside the workdir."""
    for path in outputs:
        if escapes_through_symlink(workdir, path):
            raise StepFailed("refused", f"output '{path}' leads outside the workdir")
        target = workdir / path
        if not (target.is_dir() if is_dir(path) else target.is_file()):
            what = "folder" if is_dir(path) else "file"
            raise StepFailed("missing_output", f"did not create its output {what} '{path}'")

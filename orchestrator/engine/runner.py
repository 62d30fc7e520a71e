"""The build runner: verifies, restores or runs the steps `scheduler.Schedule` hands out.

A step is assessed when everything it depends on is done, so its key covers what its upstream
steps actually wrote (early cutoff). Up-to-date steps and restores complete at once; runs take
one of `jobs` slots. After each success the step's outputs go to the cache and its lock entry is
written; a failure blocks the steps after it and, without `keep_going`, stops new starts (the
schedule decides; the runner reports it).
Cancellation (Ctrl-C, SIGTERM) stops new starts and ends the running steps: the signal is
recorded (see `interrupt`), looked at between two assessments and, while the event loop runs,
forwarded to it. The lock file still gets every entry recorded before, in its last write.
The runner records a run only through the events it emits: the manifest is their fold
(`record.manifest`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core import interrupt
from orchestrator.core.errors import StepFailed, describe_os_error
from orchestrator.core.paths import escapes_through_symlink, is_dir, is_within
from orchestrator.engine.decide import Action
from orchestrator.engine.lockwriter import LockWriter
from orchestrator.engine.outputs import Keeper, Kept, clear, unrecorded
from orchestrator.engine.scheduler import Schedule
from orchestrator.engine.state import Assessment, Workspace
from orchestrator.engine.undeclared import Watch
from orchestrator.record.events import EventLog
from orchestrator.record.manifest import CANCELLED_KIND
from orchestrator.record.runs import RunFolder
from orchestrator.record.status import JobStatus, Status
from orchestrator.store.filestore import WriteRefused, confined_unlink
from orchestrator.store.hashing import PathEscapes

if TYPE_CHECKING:
    import asyncio

    from orchestrator.language.pipeline import LoadedPipeline
    from orchestrator.plan.compiled import PlannedStep
    from orchestrator.providers import Providers
    from orchestrator.steps import Kind, Outcome


@dataclass(frozen=True)
class RunOptions:
    """How to run: parallelism and failure policy."""

    jobs: int = 1
    keep_going: bool = False
    store: bool = True
    offline: bool = False
    sandbox: bool = False


class Runner:
    """Runs the selected steps of a plan."""

    def __init__(
        self,
        workspace: Workspace,
        selected: list[str],
        options: RunOptions,
        events: EventLog,
        folder: RunFolder,
        pipeline: Callable[[], LoadedPipeline],
        kinds: Callable[[], Mapping[str, Kind]],
    ) -> None:
        self.workspace = workspace
        self.plan = workspace.plan
        self.selected = selected
        self.options = options
        self.events = events
        self.folder = folder
        self.pipeline = pipeline
        self.kinds = kinds
        self.lock = LockWriter(workspace)
        preds = {step_id: self.plan.steps[step_id].preds for step_id in selected}
        self.schedule = Schedule(selected, preds, options.jobs, options.keep_going)
        self.assessments: dict[str, Assessment] = {}
        self.running: dict[asyncio.Task[Status], str] = {}
        self.cancelled = False
        self.lock_failed = False
        self._providers: Providers | None = None
        self._keeper: Keeper | None = None
        self._masked_pipeline = False
        self._cwd = Path.cwd()
        self.watch = Watch(workspace.workdir, workspace.hasher)

    # ------------------------------------------------------------------ the loop

    def run(self) -> JobStatus:
        """Build; the job's final status. The event loop starts only if a step has to run."""
        try:
            self._assess_ready()
            if self.schedule.has_queued and not self.cancelled:
                import asyncio

                asyncio.run(self._run_queued())
        except KeyboardInterrupt:  # only when orch's handler is not installed
            self.cancel()
        finally:
            self.watch.close()
        try:
            self.lock.write_pending()
        except OSError as exc:
            self._lock_failed(exc)
        if self.cancelled or interrupt.requested():
            return JobStatus.CANCELLED
        if self.schedule.succeeded() and not self.lock_failed:
            return JobStatus.SUCCEEDED
        return JobStatus.FAILED

    async def _run_queued(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        self.lock.in_loop = True
        try:
            with interrupt.forwarding(lambda: loop.call_soon_threadsafe(self.cancel)):
                await self._schedule()
                await self.lock.flush()
        except OSError as exc:
            self._lock_failed(exc)
        finally:
            self.lock.in_loop = False
            if self._providers is not None:
                await self._providers.aclose()

    async def _schedule(self) -> None:
        """Start queued steps as slots free up, until none runs."""
        import asyncio

        while True:
            self._assess_ready()
            for step_id in self.schedule.start():
                task = asyncio.ensure_future(self._execute(step_id, self.assessments.pop(step_id)))
                self.running[task] = step_id
            if self.schedule.done:
                return
            done, _ = await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                step_id = self.running.pop(task)
                self._finish_step(step_id, Status.CANCELLED if task.cancelled() else task.result())

    def _lock_failed(self, error: OSError) -> None:
        """Fail the build and say why, once (the final write retries what the loop could not)."""
        if self.lock_failed:
            return
        self.lock_failed = True
        message = describe_os_error(error, "write the lock file", self.workspace.lock_file)
        self.events.emit("lock.failed", level="error", message=message)

    def cancel(self) -> None:
        """Stop starting steps and end the running ones."""
        if self.cancelled:
            return
        self.cancelled = True
        self.schedule.cancel()
        for task in self.running:
            task.cancel()

    def _assess_ready(self) -> None:
        """Settle every ready step that needs no job slot; queue the ones that must run."""
        while (step_id := self._next_ready()) is not None:
            try:
                self._settle_or_queue(step_id)
            except (PathEscapes, WriteRefused) as exc:
                failure = StepFailed("refused", str(exc))
                self._finish_step(step_id, self._failed(step_id, None, failure))

    def _next_ready(self) -> str | None:
        """The next step to assess; None when none is, a failure stopped the build, or a signal
        arrived."""
        if self.schedule.has_ready and interrupt.requested():
            self.cancel()
        return self.schedule.take_ready()

    def _settle_or_queue(self, step_id: str) -> None:
        """Skip an up-to-date step, restore one the cache holds, or queue it to run."""
        assessment = self.workspace.assess(self.plan.steps[step_id])
        action = assessment.decision.action
        if action == Action.UP_TO_DATE:
            outputs = _present(assessment.outputs)
            self.events.emit("step.skipped", step_id, reason=Status.UP_TO_DATE, outputs=outputs)
            self.watch.settle(assessment.step, outputs)
            self._finish_step(step_id, Status.UP_TO_DATE)
            return
        if action == Action.RESTORE:
            miss = self._restore(assessment)
            if miss is None:
                self._finish_step(step_id, Status.RESTORED)
                return
            assessment = assessment._replace(cached=None, miss=miss)
        self.assessments[step_id] = assessment
        self.schedule.queue(step_id)

    def _finish_step(self, step_id: str, status: Status) -> None:
        """Record how a step ended; report the steps its failure blocks."""
        for after in self.schedule.finish(step_id, status):
            self.events.emit(
                "step.skipped", after, "warning", reason=Status.BLOCKED, upstream=step_id
            )

    # ------------------------------------------------------------------ restore and run

    def _restore(self, assessment: Assessment) -> str | None:
        """Bring a step's outputs back from the cache; None once done, else why it could not.

        Every object is checked before anything is written, and bytes orch did not record are
        kept before they are overwritten or removed.
        """
        step, action = assessment.step, assessment.cached
        assert action is not None
        cache, workdir = self.workspace.cache, self.workspace.workdir
        try:
            cache.check(action)
        except OSError as exc:
            return str(exc)
        self.events.emit("cache.hit", step.id, key=assessment.key)
        replaced = {p: d for p, d in assessment.outputs.items() if action.outputs.get(p) != d}
        try:
            self._report_kept(step.id, self._keep(step, replaced))
            written = cache.write(action, workdir)
        except OSError as exc:
            return f"cannot restore: {exc}"
        for result in written:
            self.events.emit("file.written", step.id, **result.as_event_data())
        for stray in sorted(set(assessment.outputs) - set(action.outputs)):
            confined_unlink(workdir, stray)
            self.events.emit("file.removed", step.id, path=stray, reason="not in the cache entry")
        self.events.emit(
            "step.restored",
            step.id,
            key=assessment.key,
            reasons=list(assessment.decision.reasons),
            outputs=dict(action.outputs),
        )
        self.lock.record(step.id, assessment.entry(action.outputs))
        self.watch.settle(step, action.outputs)
        return None

    def keeper(self) -> Keeper:
        """What keeps hand edits in this workdir's cache (created on first use)."""
        if self._keeper is None:
            self._keeper = Keeper(
                self.workspace.cache, self.workspace.workdir, Path(self.plan.pipeline), self._cwd
            )
        return self._keeper

    def _keep(self, step: PlannedStep, current: Mapping[str, str | None]) -> list[Kept]:
        """Keep the present files among `current` whose bytes the lock file does not record."""
        entry = self.workspace.entries.get(step.id)
        recorded = entry.outputs if entry is not None else {}
        edited = unrecorded(current, recorded)
        return self.keeper().keep(edited, recorded) if edited else []

    def _report_kept(self, step_id: str, kept: list[Kept]) -> None:
        for found in kept:
            self.events.emit("file.kept", step_id, "warning", **found.as_event_data())

    def _clear(self, assessment: Assessment, orch_writes: tuple[str, ...]) -> list[Kept]:
        """Before a step runs: keep what orch did not record, then remove the files its command
        writes, so it runs as in a fresh build. Files orch writes itself (`orch_writes`) are
        replaced whole later, and left alone when unchanged."""
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

    async def _execute(self, step_id: str, assessment: Assessment) -> Status:
        """Run one step; its status: ran or failed (cancellation propagates)."""
        import asyncio

        if self.options.store and self.plan.steps[step_id].cache:
            self._report_miss(step_id, assessment)
        self.events.emit("step.started", step_id, reasons=list(assessment.decision.reasons))
        started = time.monotonic()
        try:
            outputs, meta = await self._produce(step_id, assessment)
        except StepFailed as exc:
            return self._failed(step_id, started, exc)
        except (PathEscapes, WriteRefused) as exc:
            return self._failed(step_id, started, StepFailed("refused", str(exc)))
        except OSError as exc:
            return self._failed(step_id, started, StepFailed("io", describe_os_error(exc)))
        except asyncio.CancelledError:
            self.events.emit(
                "step.failed",
                step_id,
                "error",
                kind=CANCELLED_KIND,
                message="cancelled",
                duration_s=_since(started),
            )
            raise
        self.events.emit(
            "step.succeeded", step_id, duration_s=_since(started), outputs=outputs, **meta
        )
        return Status.RAN

    def _report_miss(self, step_id: str, assessment: Assessment) -> None:
        if assessment.miss is None:
            self.events.emit("cache.miss", step_id, key=assessment.key)
        else:
            self.events.emit(
                "cache.miss", step_id, "warning", key=assessment.key, reason=assessment.miss
            )

    async def _produce(
        self, step_id: str, assessment: Assessment
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Clear the step's outputs, run it, keep its outputs in the cache and its entry in the
        lock file."""
        import asyncio

        step = self.pipeline().steps[step_id]
        kind = self.kinds()[step.kind]
        kept = await asyncio.to_thread(self._clear, assessment, kind.written_by_orch(step))
        self._report_kept(step_id, kept)
        if kind.runs_commands:
            self._start_watch()
        try:
            outcome = await self._run_kind(step_id)
        finally:
            if kind.runs_commands:
                self._report_undeclared(step_id)
        outputs = await asyncio.to_thread(self._finish, assessment, outcome.meta)
        self.watch.settle(assessment.step, outputs)
        number = self.lock.record(step_id, assessment.entry(outputs))
        if self.schedule.dependents(step_id):
            # The steps after it start once it is on disk. Cancelled meanwhile, the step is
            # still done: its entry is recorded and the build's last lock write has it.
            with contextlib.suppress(asyncio.CancelledError):
                await self.lock.written(number)
        return outputs, dict(outcome.meta)

    def _start_watch(self) -> None:
        """Before the first step that runs commands: stamp the settled steps, and the outputs
        the lock file records for the steps this build did not select."""
        if self.watch.started:
            return
        for step in self.plan.steps.values():
            if step.id not in self.schedule and step.id in self.workspace.entries:
                with contextlib.suppress(OSError, PathEscapes):
                    self.watch.settle(step, _present(self.workspace.output_hashes(step)))
        self.watch.start()

    def _report_undeclared(self, step_id: str) -> None:
        """After a step that ran commands: warn about the outputs of settled steps that changed
        meanwhile, naming the other such steps running alongside."""
        kinds = self.kinds()
        running = (self.plan.steps[other] for other in self.running.values())
        commands = {step.id for step in running if kinds[step.kind].runs_commands}
        for found in self.watch.check(alongside=commands - {step_id}):
            self.events.emit("file.undeclared_write", step_id, "warning", **found.as_event_data())

    def _failed(self, step_id: str, started: float | None, failure: StepFailed) -> Status:
        """Report a step's failure, with how long it ran (None: it did not start) and what it
        used."""
        self.events.emit(
            "step.failed",
            step_id,
            "error",
            kind=failure.kind,
            message=failure.message,
            duration_s=None if started is None else _since(started),
            **({"meta": dict(failure.meta)} if failure.meta else {}),
        )
        return Status.FAILED

    async def _run_kind(self, step_id: str) -> Outcome:
        pipeline = self.pipeline()
        step = pipeline.steps[step_id]
        kind = self.kinds().get(step.kind)
        if kind is None:
            raise StepFailed("unsupported", f"{step.kind} steps cannot run in this version")
        scratch = self.folder.path / "scratch" / self.folder.log(step_id).stem
        log = self.folder.log(step_id)
        from orchestrator.steps import StepContext

        self._mask_secrets_of(pipeline)
        context = StepContext(
            pipeline,
            step,
            log,
            scratch,
            self.events,
            providers=self.providers,
            others=self.plan.steps[step_id].nested,
            sandboxed=self.options.sandbox,
        )
        try:
            return await kind.execute(context)
        finally:
            import asyncio

            await asyncio.shield(asyncio.to_thread(self.events.masker.file, log))

    def _mask_secrets_of(self, pipeline: LoadedPipeline) -> None:
        """Mask the secrets the pipeline's environment adds (its dotenv files), once."""
        if not self._masked_pipeline:
            from orchestrator.record.masking import secret_values

            self.events.masker.add(secret_values(pipeline.env))
            self._masked_pipeline = True

    def providers(self) -> Providers:
        """The build's providers, created on first use and closed when the loop ends."""
        if self._providers is None:
            from orchestrator.providers import Providers

            pipeline = self.pipeline()
            self._providers = Providers(
                pipeline.providers, pipeline.env, pipeline.workdir, offline=self.options.offline
            )
            for name in pipeline.providers:
                self.events.masker.add(self._providers.settings(name).secrets())
        return self._providers

    def _finish(self, assessment: Assessment, meta: Mapping[str, Any]) -> dict[str, str]:
        """Hash a finished step's outputs and keep them in the cache."""
        step = assessment.step
        _check_outputs(self.workspace.workdir, step.outputs)
        hashes = self.workspace.output_hashes(step)
        missing = sorted(path for path, digest in hashes.items() if digest is None)
        if missing:
            raise StepFailed("missing_output", f"did not create its output file '{missing[0]}'")
        outputs = _present(hashes)
        if self.options.store and step.cache:
            try:
                self.workspace.cache.store(assessment.key, self.workspace.workdir, outputs, meta)
            except OSError as exc:
                why = describe_os_error(exc, "store its outputs in the cache")
                raise StepFailed("io", why) from exc
        return outputs


def _check_outputs(workdir: Path, outputs: tuple[str, ...]) -> None:
    """Fail unless every declared output exists, as a file or a folder, inside the workdir."""
    for path in outputs:
        if escapes_through_symlink(workdir, path):
            raise StepFailed("refused", f"output '{path}' leads outside the workdir")
        target = workdir / path
        if not (target.is_dir() if is_dir(path) else target.is_file()):
            what = "folder" if is_dir(path) else "file"
            raise StepFailed("missing_output", f"did not create its output {what} '{path}'")


def _since(started: float) -> float:
    """Seconds since `started` (a `time.monotonic()`), to the millisecond."""
    return round(time.monotonic() - started, 3)


def _present(hashes: Mapping[str, str | None]) -> dict[str, str]:
    return {path: digest for path, digest in hashes.items() if digest is not None}

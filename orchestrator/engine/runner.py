"""The build runner: verifies, restores or runs the steps `scheduler.Schedule` hands out.

A step is assessed when everything it depends on is done, so its key covers what its upstream
steps actually wrote (early cutoff). Up-to-date steps and restores complete at once; runs take
one of `jobs` slots. Ready steps are assessed a batch at a time between looks at the running
ones, so the first steps start before the last ready step is assessed. After each success the
step's outputs go to the cache and its lock entry is written; a failure blocks the steps after
it and, without `keep_going`, stops new starts (the schedule decides; the runner reports it). A
result also goes to the remote cache, if there is one, in the background; the build waits for
those uploads before it ends.
Cancellation (Ctrl-C, SIGTERM) stops new starts and ends the running steps: the signal is
recorded (see `interrupt`), looked at between two assessments and, while the event loop runs,
forwarded to it. The lock file still gets every entry recorded before, in its last write.
The runner records a run only through the events it emits: the manifest is their fold
(`record.manifest`).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.core import interrupt, memory
from orchestrator.core.errors import StepFailed, describe_os_error
from orchestrator.engine.decide import Action
from orchestrator.engine.execution import Execution, OutputListener, PipelineOnDemand
from orchestrator.engine.lockwriter import LockWriter
from orchestrator.engine.outputs import declares
from orchestrator.engine.scheduler import Schedule
from orchestrator.engine.state import Assessment, Workspace
from orchestrator.engine.stepfiles import StepFiles, present
from orchestrator.engine.undeclared import Watch
from orchestrator.record.events import EventLog
from orchestrator.record.manifest import CANCELLED_KIND
from orchestrator.record.runs import RunFolder
from orchestrator.record.status import SUCCESSES, JobStatus, Status
from orchestrator.store.filestore import WriteRefused
from orchestrator.store.hashing import PathEscapes

if TYPE_CHECKING:
    import asyncio

    from orchestrator.plan.shards import Shard
    from orchestrator.providers.budget import Budget
    from orchestrator.steps import Kind

UPLOADS = 8
"""Uploads to the remote cache under way at once."""
ASSESSED_AT_ONCE = 64
"""How many ready steps the loop assesses before it starts what they queued and looks at the
running steps again: the first steps start at once, and assessing the others overlaps them."""
POLLS = (0.2, 5.0)
"""The first and the longest pause between two looks for a result another shard uploads."""


@dataclass(frozen=True)
class RunOptions:
    """How to run: parallelism and failure policy."""

    jobs: int = 1
    keep_going: bool = False
    store: bool = True
    offline: bool = False
    sandbox: bool = False
    budget: Budget | None = None
    """The build's spending limit, shared by its rounds."""
    batch: bool = False
    """Send llm steps' first calls through the providers' batch APIs."""
    shard_wait: float = 0.0
    """How long to wait for another shard to upload a step of its share (`--shard-wait`)."""
    output: OutputListener | None = None
    """Given each line of a running step's output, with the step's id (`orch build -v`)."""


class Runner:
    """Runs the selected steps of a plan."""

    def __init__(
        self,
        workspace: Workspace,
        selected: list[str],
        options: RunOptions,
        events: EventLog,
        folder: RunFolder,
        pipeline: PipelineOnDemand,
        kinds: Callable[[], Mapping[str, Kind]],
        foreign: Mapping[str, Shard] | None = None,
    ) -> None:
        self.workspace = workspace
        self.plan = workspace.plan
        self.selected = selected
        self.options = options
        self.events = events
        self.execution = Execution(
            workspace.workdir,
            pipeline,
            kinds,
            events,
            folder,
            offline=options.offline,
            sandboxed=options.sandbox,
            budget=options.budget,
            batch=options.batch,
            output=options.output,
        )
        self.files = StepFiles(workspace, events, store=options.store)
        self.lock = LockWriter(workspace)
        preds = {step_id: self.plan.steps[step_id].preds for step_id in selected}
        free = self._batched(selected) if options.batch else frozenset()
        self.schedule = Schedule(selected, preds, options.jobs, options.keep_going, free)
        self.assessments: dict[str, Assessment] = {}
        self._uploads: set[asyncio.Future[None]] = set()
        self._upload_slots: asyncio.Semaphore | None = None
        self.running: dict[asyncio.Task[Any], str] = {}
        self.foreign = foreign or {}
        """Steps of other shards' shares (`--shard`), with their shard."""
        self._to_wait: list[str] = []
        self._waited: set[str] = set()
        self.waits: dict[asyncio.Task[Any], str] = {}
        self.cancelled = False
        self.lock_failed = False
        self.watch = Watch(workspace.workdir, workspace.hasher)

    def _batched(self, selected: list[str]) -> frozenset[str]:
        """The llm steps whose provider has a batch API: under `--batch` they wait on it and
        take no job slot, so that every ready one can join the batch."""
        from orchestrator.providers.batchapi import api_for

        llm = [s for s in selected if self.plan.steps[s].kind == "llm"]
        if not llm:
            return frozenset()
        providers = self.execution.pipeline().providers
        kinds = {name: provider.kind for name, provider in providers.items()}
        return frozenset(
            step_id
            for step_id in llm
            if api_for(kinds.get(self.plan.steps[step_id].provider or "", "")) is not None
        )

    # ------------------------------------------------------------------ the loop

    def run(self) -> JobStatus:
        """Build; the job's final status. The event loop starts only if a step has to run."""
        try:
            self.files.drop_stale()
            self._assess_ready(at_most=0)  # all of a build that runs nothing, without a loop
            if (self.schedule.has_queued or self._to_wait) and not self.cancelled:
                import asyncio

                memory.resume()  # running steps makes cycles: the collector runs again
                _watch_children_with_pidfds()
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
                self._load_unless_planned()
                await self._schedule()
                await self.lock.flush()
        except OSError as exc:
            self._lock_failed(exc)
        finally:
            self.lock.in_loop = False
            await self._uploaded()
            await self.execution.aclose()

    def _load_unless_planned(self) -> None:
        """Load the pipeline before any step starts, unless every step still to settle runs
        from its planned command: the load then sees the workdir as the build found it, not
        as the first commands left it. Ready steps that may need it are assessed first: they
        may all be up to date."""
        if self.execution.pipeline.loaded or not self._unsettled_unplanned():
            return
        self._assess_ready(at_most=len(self.plan.steps))
        if self._unsettled_unplanned():
            self.execution.pipeline()

    def _unsettled_unplanned(self) -> bool:
        """Whether a step still to settle has no planned command."""
        status = self.schedule.status
        unsettled = (s for s, ending in status.items() if ending == Status.PENDING)
        return any(self.plan.steps[s].command is None for s in unsettled)

    def _upload(self, key: str) -> None:
        """Send a step's result to the remote cache in the background (`UPLOADS` at a time),
        so the steps after it need not wait; the build awaits every upload before it ends."""
        import asyncio

        remote = self.workspace.remote
        if remote is None or not self.options.store:
            return
        if self._upload_slots is None:
            self._upload_slots = asyncio.Semaphore(UPLOADS)
        slots = self._upload_slots

        async def upload() -> None:
            async with slots:
                await asyncio.to_thread(remote.push, key)

        task = asyncio.ensure_future(upload())
        self._uploads.add(task)
        task.add_done_callback(self._uploads.discard)

    async def _uploaded(self) -> None:
        """Wait for the uploads still under way (a remote that fails turns itself off); a
        cancelled build does not wait for them (a record is only ever sent after its objects)."""
        import asyncio

        if self.cancelled:
            for task in self._uploads:
                task.cancel()
        while self._uploads:
            await asyncio.gather(*list(self._uploads), return_exceptions=True)

    async def _schedule(self) -> None:
        """Start queued steps as slots free up, until none runs."""
        import asyncio

        while True:
            # While nothing runs, the first step that must run starts as soon as it is found.
            self._assess_ready(at_most=ASSESSED_AT_ONCE if self.running else 0)
            self._start_waits()
            for step_id in self.schedule.start():
                task = asyncio.ensure_future(self._execute(step_id, self.assessments.pop(step_id)))
                self.running[task] = step_id
            if self.schedule.stopping:  # a failure: what other shards upload is not needed
                for waiting in self.waits:
                    waiting.cancel()
            if self.schedule.done and not self.waits:
                return
            tasks = [*self.running, *self.waits]
            if self.schedule.has_ready and not self.schedule.stopping:
                await asyncio.sleep(0)  # more to assess: take what ended, without waiting
                done = {task for task in tasks if task.done()}
            else:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in self.waits:
                    self._waited_for(self.waits.pop(task), task)
                    continue
                step_id = self.running.pop(task)
                self._finish_step(step_id, Status.CANCELLED if task.cancelled() else task.result())

    def _lock_failed(self, error: OSError) -> None:
        """Fail the build and say why, once (the final write retries what the loop could not)."""
        if self.lock_failed:
            return
        self.lock_failed = True
        message = describe_os_error(error, "write the lock file", self.workspace.lock_file)
        self.events.emit("lock.failed", level="error", message=message)

    def completed(self) -> set[str]:
        """The steps that succeeded: ran, restored or up to date."""
        return {s for s, status in self.schedule.status.items() if status in SUCCESSES}

    def cancel(self) -> None:
        """Stop starting steps and end the running ones."""
        if self.cancelled:
            return
        self.cancelled = True
        self.schedule.cancel()
        for task in [*self.running, *self.waits]:
            task.cancel()

    def _assess_ready(self, at_most: int) -> None:
        """Settle ready steps that need no job slot and queue the ones that must run: `at_most`
        of them, and more while the next comes before every queued step in plan order (so
        steps start in the same order as if all were assessed first; every ready step is,
        when none has to run)."""
        assessed = 0
        while assessed < at_most or self.schedule.ready_comes_first:
            step_id = self._next_ready()
            if step_id is None:
                return
            self._settle_safely(step_id)
            assessed += 1

    def _settle_safely(self, step_id: str, *, waited: bool = False) -> None:
        """`_settle_or_queue`, failing the step when its paths are refused."""
        try:
            self._settle_or_queue(step_id, waited=waited)
        except (PathEscapes, WriteRefused) as exc:
            failure = StepFailed("refused", str(exc))
            self._finish_step(step_id, self._failed(step_id, None, failure))

    def _next_ready(self) -> str | None:
        """The next step to assess; None when none is, a failure stopped the build, or a signal
        arrived."""
        if self.schedule.has_ready and interrupt.requested():
            self.cancel()
        return self.schedule.take_ready()

    def _settle_or_queue(self, step_id: str, *, waited: bool = False) -> None:
        """Skip an up-to-date step, restore one the cache holds, or queue it to run; defer one
        planned from an output that changed since, to the build's next round. A step of another
        shard's share waits for that shard's upload first (unless it `waited` already: then
        what the remote sent is in the local cache)."""
        step = self.plan.steps[step_id]
        if not self.workspace.still_holds(step):
            self.schedule.finish(step_id, Status.DEFERRED)
            return
        assessment = self.workspace.assess(step)
        action = assessment.decision.action
        if action == Action.UP_TO_DATE:
            outputs = present(assessment.outputs)
            self.events.emit("step.skipped", step_id, reason=Status.UP_TO_DATE, outputs=outputs)
            self.watch.settle(assessment.step, outputs)
            self._finish_step(step_id, Status.UP_TO_DATE)
            return
        if action == Action.RESTORE:
            if waited:
                assessment = assessment._replace(remote=True)
            restored = self.files.restore(assessment)
            if not isinstance(restored, str):
                self._restored(assessment, restored)
                return
            assessment = assessment._replace(cached=None, miss=restored)
        self.assessments[step_id] = assessment
        if self._may_wait(step_id):
            self._to_wait.append(step_id)
        else:
            self.schedule.queue(step_id)

    # ------------------------------------------------------------------ other shards' steps

    def _may_wait(self, step_id: str) -> bool:
        """Whether a step that has to run is one another shard builds, and its upload can come."""
        remote, step = self.workspace.remote, self.plan.steps[step_id]
        return (
            step_id in self.foreign
            and step_id not in self._waited
            and remote is not None
            and remote.problem is None
            and step.cache
            and not (step.always_run or step_id in self.workspace.forced)  # they run anyway
        )

    def _start_waits(self) -> None:
        import asyncio

        for step_id in self._to_wait:
            self._waited.add(step_id)
            self.waits[asyncio.ensure_future(self._uploaded_by_owner(step_id))] = step_id
        self._to_wait.clear()

    async def _uploaded_by_owner(self, step_id: str) -> bool:
        """Look in the remote for the step's result, more and more slowly, until its shard has
        uploaded it (True: it is in the local cache now) or `shard_wait` is over."""
        import asyncio

        remote, assessment = self.workspace.remote, self.assessments[step_id]
        assert remote is not None
        self.events.emit(
            "cache.remote_wait",
            step_id,
            key=assessment.key,
            shard=str(self.foreign[step_id]),
            timeout_s=self.options.shard_wait,
        )
        mine = functools.partial(declares, assessment.step)
        deadline = time.monotonic() + self.options.shard_wait
        pause, longest = POLLS
        while (left := deadline - time.monotonic()) > 0 and remote.problem is None:
            await asyncio.sleep(min(pause, left))
            if await asyncio.to_thread(remote.fetch, assessment.key, mine) is not None:
                return True
            pause = min(pause * 1.5, longest)
        return False

    def _waited_for(self, step_id: str, task: asyncio.Task[Any]) -> None:
        """Restore a step its shard uploaded; run one it did not in time (a cancelled wait
        leaves the step pending)."""
        if task.cancelled():
            return
        if task.result():
            self.assessments.pop(step_id)
            self._settle_safely(step_id, waited=True)
            return
        assessment = self.assessments[step_id]
        if assessment.miss is None and self.workspace.remote is not None:
            owner, wait = self.foreign[step_id], self.options.shard_wait
            why = f"shard {owner} did not upload it within {wait:g} s"
            if self.workspace.remote.problem is not None:
                why = f"the remote cache was turned off while waiting for shard {owner}"
            self.assessments[step_id] = assessment._replace(miss=why)
        self.schedule.queue(step_id)

    def _finish_step(self, step_id: str, status: Status) -> None:
        """Record how a step ended; report the steps its failure blocks."""
        for after in self.schedule.finish(step_id, status):
            self.events.emit(
                "step.skipped", after, "warning", reason=Status.BLOCKED, upstream=step_id
            )

    # ------------------------------------------------------------------ restore and run

    def _restored(self, assessment: Assessment, outputs: dict[str, str]) -> None:
        step = assessment.step
        origin: dict[str, Any] = {"remote": True} if assessment.remote else {}
        self.events.emit(
            "step.restored",
            step.id,
            key=assessment.key,
            reasons=list(assessment.decision.reasons),
            outputs=outputs,
            **origin,
        )
        self.lock.record(step.id, assessment.entry(outputs))
        self.watch.settle(step, outputs)
        self._finish_step(step.id, Status.RESTORED)

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

        planned = self.plan.steps[step_id]
        orch_writes = self.execution.written_by_orch(planned)
        kept = await asyncio.to_thread(self.files.clear, assessment, orch_writes)
        self.files.report_kept(step_id, kept)
        runs_commands = self.execution.runs_commands(planned)
        if runs_commands:
            self._start_watch()
        try:
            outcome = await self.execution.run(planned)
        finally:
            if runs_commands:
                self._report_undeclared(step_id)
        outputs = await asyncio.to_thread(self.files.finish, assessment, outcome.meta)
        if assessment.step.cache:
            self._upload(assessment.key)
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
                    self.watch.settle(step, present(self.workspace.output_hashes(step)))
        self.watch.start()

    def _report_undeclared(self, step_id: str) -> None:
        """After a step that ran commands: warn about the outputs of settled steps that changed
        meanwhile, naming the other such steps running alongside."""
        running = (self.plan.steps[other] for other in self.running.values())
        commands = {step.id for step in running if self.execution.runs_commands(step)}
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
            **failure.details,
        )
        return Status.FAILED


def _watch_children_with_pidfds() -> None:
    """Have the event loop learn that a step's process ended from a pidfd it polls, as
    Python 3.12 does by default, rather than from a thread started per process to wait for it
    (Python 3.11's default). Kept as is where the kernel has no pidfds."""
    import asyncio
    import os
    import sys

    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


def _since(started: float) -> float:
    """Seconds since `started` (a `time.monotonic()`), to the millisecond."""
    return round(time.monotonic() - started, 3)

"""`orch build` and `orch status` as library calls: plan, assess, run, record.

These functions never print; they hand events to listeners and return reports for the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.core import interrupt, memory
from orchestrator.core.errors import IoFailure, PipelineError, UsageError, describe_os_error
from orchestrator.engine import leftovers
from orchestrator.engine.buildlock import BuildLock
from orchestrator.engine.decide import Action, Options
from orchestrator.engine.execution import OutputListener, PipelineOnDemand
from orchestrator.engine.runner import Runner, RunOptions
from orchestrator.engine.state import Assessment, Workspace
from orchestrator.plan.compiled import Plan, compile_plan
from orchestrator.record import runs
from orchestrator.record.events import Event, EventLog, Listener
from orchestrator.record.manifest import Manifest
from orchestrator.record.masking import Masker
from orchestrator.record.runs import RunFolder, new_job_id
from orchestrator.record.status import JobStatus, Status
from orchestrator.store.layout import StateFolder

if TYPE_CHECKING:
    from orchestrator.engine.estimates import Estimate
    from orchestrator.language.pipeline import LoadedPipeline
    from orchestrator.plan.shards import Shard
    from orchestrator.providers.budget import Budget
    from orchestrator.steps import Kind
    from orchestrator.store.remote import RemoteCache


@dataclass(frozen=True)
class Request:
    """What the user asked for."""

    pipeline: Path
    targets: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    provider: str | None = None
    jobs: int = 0
    force: bool = False
    """Run the named steps (all selected ones when none is named) whatever their state."""
    downstream: bool = False
    """With `force`, also run every step after the named ones."""
    keep_going: bool = False
    use_cache: bool = True
    offline: bool = False
    sandbox: bool = False
    max_cost: float | None = None
    remote_required: bool = False
    """Fail the build when the remote cache cannot be used."""
    batch: bool = False
    shard: Shard | None = None
    """Build only this share of the steps, and what it needs (`--shard I/N`)."""
    shard_wait: float = 600.0
    """How long a shard waits for another to upload a step it needs (`--shard-wait`)."""

    @property
    def options(self) -> Options:
        """The flags that bear on each step's decision."""
        return Options(force=self.force, use_cache=self.use_cache)

    @property
    def job_count(self) -> int:
        """`jobs`, or ORCH_JOBS, or the number of CPUs."""
        if self.jobs > 0:
            return self.jobs
        from_env = os.environ.get("ORCH_JOBS", "")
        return int(from_env) if from_env.isdigit() and int(from_env) > 0 else os.cpu_count() or 1


@dataclass(frozen=True)
class Report:
    """How a build ended."""

    status: JobStatus
    job_id: str
    manifest: Manifest
    run_folder: Path
    warnings: tuple[str, ...] = ()
    """What loading the pipeline warned about, and what clearing a killed build's leftovers
    did."""


def open_plan(
    request: Request, *, keep: bool = False, fresh: bool = False
) -> tuple[Plan, PipelineOnDemand]:
    """The compiled plan of the pipeline and a way to get the loaded pipeline for running.

    A plan saved by an earlier build is reused while valid, unless `fresh`; `keep` saves a
    freshly compiled one.
    """
    from orchestrator.plan import saved as plancache

    plan, identity = plancache.load(request.pipeline, request.overrides, request.provider)
    if plan is not None and not fresh:
        return plan, PipelineOnDemand(load=lambda: _load(request))
    loaded = _load(request)
    plan = compile_plan(loaded)
    if keep:
        plancache.save(identity, loaded, plan)
    return plan, PipelineOnDemand(loaded=loaded)


def _load(request: Request) -> LoadedPipeline:
    from orchestrator.plan.loading import load

    return load(request.pipeline, overrides=request.overrides, provider=request.provider)


def predict(request: Request) -> tuple[Plan, list[Assessment]]:
    """What `orch build` would do (for `orch status` and `--dry-run`); writes nothing."""
    with memory.kept_for_the_build() as settle:
        plan, workspace, selected, compiled = _looking(request)
        settle(compiled)
        return plan, workspace.predict(_share(request, plan, selected)[0])


def _looking(request: Request) -> tuple[Plan, Workspace, list[str], bool]:
    """The plan, a workspace to assess it in and the selected steps, for a look that writes
    nothing; and whether the plan was compiled afresh (the pipeline was loaded)."""
    plan, pipeline = open_plan(request)
    return plan, _workspace(request, plan), _selected(request, plan), pipeline.loaded


def _selected(request: Request, plan: Plan) -> list[str]:
    """The targets and what they need (the default steps without targets); with `-B
    --downstream`, also the steps after the targets, and what those need."""
    if request.force and request.downstream and request.targets:
        return plan.select([*request.targets, *sorted(_forced(request, plan))])
    return plan.select(request.targets)


def _workspace(request: Request, plan: Plan) -> Workspace:
    """A workspace to assess the plan's steps in, knowing which of them `-B` forces."""
    workspace = Workspace(plan, request.options, force=request.force)
    workspace.forced = _forced(request, plan)
    return workspace


def _forced(request: Request, plan: Plan) -> frozenset[str]:
    """The steps `-B` runs whatever their state: the named ones (every step when none is named),
    and with `--downstream` every step after them. A group planned later is forced once it
    is planned: its members are not known before."""
    if not request.force:
        return frozenset()
    if not request.targets:
        return frozenset(plan.steps)
    named = {s for t in request.targets if t not in plan.deferred for s in plan.resolve(t)}
    if request.downstream:
        for step in plan.steps.values():  # in dependency order: one pass reaches every step
            if named.intersection(step.preds):
                named.add(step.id)
    return frozenset(named)


def estimate(request: Request, plan: Plan, assessments: list[Assessment]) -> Estimate | None:
    """What the llm steps that would run may cost (None when none would run); loads the
    pipeline only then."""
    from orchestrator.engine.decide import Action

    running = [
        a.step.id
        for a in assessments
        if a.decision.action == Action.RUN and plan.steps[a.step.id].kind == "llm"
    ]
    if not running:
        return None
    from orchestrator.engine.estimates import estimate as estimated

    _, pipeline = open_plan(request)
    return estimated(pipeline(), running)


class Exchange(NamedTuple):
    """What `orch cache pull` or `push` moved, and why the remote stopped, if it did."""

    remote: str
    moved: list[str]
    problem: str | None


def pull(request: Request) -> Exchange:
    """Fill the local cache from the remote with the results the selected steps would need,
    looked up as a build would (through what earlier ones restore); nothing in the workdir
    changes."""
    _, workspace, selected, _ = _looking(request)
    remote = _required_remote(workspace, request)
    found = workspace.predict(selected)
    _keep_tally(workspace, remote)
    return Exchange(remote.settings.url, [a.step.id for a in found if a.remote], remote.problem)


def push(request: Request) -> Exchange:
    """Send the remote the cached results of the selected steps as the lock file records them
    (those the local cache holds)."""
    plan, workspace, selected, _ = _looking(request)
    remote = _required_remote(workspace, request)
    if not remote.settings.writes:
        raise UsageError("cache push: the remote cache is read-only (ORCH_REMOTE_CACHE_MODE)")
    cache, sent = workspace.cache, []
    for step_id in selected:
        entry = workspace.entries.get(step_id)
        if entry is None or not plan.steps[step_id].cache or remote.problem is not None:
            continue
        if cache.find(entry.key).result is None:
            continue
        remote.push(entry.key)
        if remote.problem is None:
            sent.append(step_id)
    _keep_tally(workspace, remote)
    return Exchange(remote.settings.url, sent, remote.problem)


def _required_remote(workspace: Workspace, request: Request) -> RemoteCache:
    """The remote cache, set on `workspace`; UsageError when none is configured."""
    remote = _remote(workspace, dataclasses.replace(request, use_cache=True))
    if remote is None:
        raise UsageError("no remote cache is set (ORCH_REMOTE_CACHE, or cache: {remote:})")
    workspace.remote = remote
    return remote


def _keep_tally(workspace: Workspace, remote: RemoteCache) -> None:
    """Add what this command did with the remote to the workdir's tally (`orch cache info`);
    a tally that cannot be written is left as it was."""
    with contextlib.suppress(OSError):
        remote.tally.add_to(workspace.state.remote_tally)


class StatusReport(NamedTuple):
    """What `orch build` would do, and which of it is due whatever always_run says."""

    plan: Plan
    assessments: list[Assessment]
    stale: frozenset[str]
    """Steps a build would run or restore even if no step were always_run: their own
    definition, inputs or outputs changed, or an upstream step's did."""


def status(request: Request, *, remote: bool = False) -> StatusReport:
    """`predict`, plus the verdict of `orch status --check`; writes nothing. With `remote`,
    a step the remote cache holds counts as restorable (its records are read, nothing is
    downloaded)."""
    with memory.kept_for_the_build() as settle:
        plan, workspace, selected, compiled = _looking(request)
        settle(compiled)
        if remote:
            _required_remote(workspace, request)
            workspace.peek_remote = True
        assessments = workspace.predict(selected)
        if any(a.step.always_run for a in assessments):
            due = workspace.predict(selected, honour_always_run=False)
        else:
            due = assessments
    stale = frozenset(a.step.id for a in due if a.decision.action != Action.UP_TO_DATE)
    return StatusReport(plan, assessments, stale)


def build(
    request: Request,
    listeners: tuple[Listener, ...] = (),
    on_plan: Callable[[Plan], None] | None = None,
    output: OutputListener | None = None,
) -> Report:
    """Build the requested steps; one build per workdir at a time.

    A signal while the pipeline loads raises `interrupt.Interrupted`, before anything is
    written; from then on it is recorded, and the build ends cancelled, with its run closed.
    A signal after its last lock write leaves the outcome as it is. It starts by clearing
    what a build killed by kill -9 left (`leftovers`). A sandbox asked for where Landlock is
    missing is refused first (`sandbox.SandboxUnavailable`). `on_plan` is given the plan once
    the targets are known to be valid, before anything is written. `output`, when given, is
    handed each line of the running steps' output (`orch build -v`).
    """
    with memory.kept_for_the_build() as settle:
        return _build_locked(request, listeners, on_plan, output, settle)


def _build_locked(
    request: Request,
    listeners: tuple[Listener, ...],
    on_plan: Callable[[Plan], None] | None,
    output: OutputListener | None,
    settle: Callable[[bool], None],
) -> Report:
    if request.sandbox:
        from orchestrator.steps.sandbox import abi_version

        abi_version()
    plan, pipeline = open_plan(request, keep=True)
    selected = _first_round(request, plan)
    if on_plan is not None:
        on_plan(plan)
    with interrupt.deferred():
        state = StateFolder(Path(plan.workdir))
        state.ensure()
        job_id = new_job_id()
        with BuildLock(state.build_lock, job_id):
            # The lock file is read only while holding the workdir: no other build changes it.
            workspace = _workspace(request, plan)
            try:
                cleared = leftovers.clear(state, plan, workspace.lock_file)
                if cleared:  # what it stopped may have written files the plan read: again
                    plan, pipeline = open_plan(request, keep=True, fresh=True)
                    selected = _first_round(request, plan)
                    workspace = _workspace(request, plan)
                workspace.remote = _remote(workspace, request)
                settle(pipeline.loaded)  # the plan, lock entries and stat cache stay
                interrupt.check()  # interrupted before the run folder exists: no run
                report = _build(
                    request, listeners, plan, pipeline, workspace, selected, job_id, output
                )
                interrupt.quiet()  # the run is recorded: a later signal changes nothing
            finally:
                leftovers.end(state)
    return dataclasses.replace(report, warnings=report.warnings + cleared)


def _first_round(request: Request, plan: Plan) -> list[str]:
    """The steps the first round of a build selects (all of them, in most pipelines)."""
    return plan.first_round(_selected(request, plan), request.targets)


def _share(
    request: Request, plan: Plan, selected: list[str]
) -> tuple[list[str], Mapping[str, Shard]]:
    """The selected steps this build takes, and the steps among them that other shards build
    (none without `--shard`)."""
    if request.shard is None:
        return selected, {}
    needed = [p for producers in plan.waiting(request.targets).values() for p in producers]
    taken = request.shard.take(plan, selected, needed)
    return taken.steps, taken.foreign


def _build(
    request: Request,
    listeners: tuple[Listener, ...],
    plan: Plan,
    pipeline: PipelineOnDemand,
    workspace: Workspace,
    selected: list[str],
    job_id: str,
    output: OutputListener | None = None,
) -> Report:
    folder = RunFolder(workspace.workdir, job_id)
    manifest = Manifest(job_id)
    events = EventLog(job_id, folder.events, Masker.from_environment(), held=True)
    events.listeners.append(manifest.apply)  # the manifest is the fold of the events
    keeper = _RunKeeper(events, folder, manifest)
    events.listeners.append(keeper)
    events.listeners.extend(listeners)
    run_options = RunOptions(
        request.job_count,
        request.keep_going,
        request.use_cache,
        request.offline,
        request.sandbox,
        budget=_budget(request.max_cost),
        batch=request.batch,
        shard_wait=request.shard_wait,
        output=output,
    )
    selected, foreign = _share(request, plan, selected)
    runner = Runner(workspace, selected, run_options, events, folder, pipeline, _kinds, foreign)
    warnings = plan.warnings
    try:
        status = _run(runner, folder, manifest, request)
    finally:
        try:
            warnings += _save_stat_cache(workspace)
        finally:
            events.close()
    if events.failure is not None:
        raise events.failure
    return Report(status, job_id, manifest, folder.path, warnings)


QUIET = frozenset({"job.started", "job.succeeded"})
"""Events of a build that changes nothing (with the up-to-date `step.skipped`): such a build
gets a line in the run history instead of a run folder."""


@dataclass
class _RunKeeper:
    """Gives the run its folder at its first event that is not one of a build that changes
    nothing (before anything changes): the events so far go to its file, and the manifest is
    written. If that fails, the error stops the build there, once."""

    events: EventLog
    folder: RunFolder
    manifest: Manifest
    failed: bool = False

    def __call__(self, event: Event) -> None:
        if not self.events.is_held or self.failed or _quiet(event):
            return
        try:
            self.folder.create()
            self.events.open()
            self.folder.write_manifest(self.manifest)
        except IoFailure:
            self.failed = True
            raise


def _quiet(event: Event) -> bool:
    kind = event["type"]
    if kind == "step.skipped":
        return bool(event["data"].get("reason") == Status.UP_TO_DATE)
    return kind in QUIET


def _save_stat_cache(workspace: Workspace) -> tuple[str, ...]:
    """Save the stat cache; a warning when it cannot be (the next build hashes afresh)."""
    try:
        workspace.stat_cache.save()
    except OSError as exc:
        what = describe_os_error(exc, "save the stat cache", workspace.stat_cache.file)
        return (f"warning: {what}; the next build hashes the files again",)
    return ()


def _remote(workspace: Workspace, request: Request) -> RemoteCache | None:
    """The shared remote cache the environment names (`ORCH_REMOTE_CACHE`), unless the build
    uses no cache."""
    from orchestrator.store.remote import RemoteCache, RemoteSettings

    try:
        settings = RemoteSettings.from_env(os.environ, workspace.plan.remote)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if settings is None and request.remote_required:
        raise UsageError(
            "--remote-required: no remote cache is set (ORCH_REMOTE_CACHE, or cache: {remote:})"
        )
    if request.shard is not None and not request.use_cache:
        raise UsageError(f"--shard {request.shard} cannot go with --no-cache: it shares results")
    if request.shard is not None and (settings is None or not settings.writes):
        raise UsageError(
            f"--shard {request.shard}: the shards share their results through a remote cache"
            " they can write (ORCH_REMOTE_CACHE, with ORCH_REMOTE_CACHE_MODE unset or"
            " read-write)"
        )
    if settings is None or not request.use_cache:
        return None
    return RemoteCache(settings, workspace.cache, os.environ)


def _budget(max_cost: float | None) -> Budget | None:
    """The build's spending limit, when it has one."""
    if max_cost is None:
        return None
    from orchestrator.providers.budget import Budget

    return Budget(max_cost)


def _run(runner: Runner, folder: RunFolder, manifest: Manifest, request: Request) -> JobStatus:
    """Open the run, build, and close the run with the job's status whatever happened."""
    started = time.monotonic()
    status = JobStatus.FAILED
    plan = runner.plan
    try:
        runner.events.emit(
            "job.started",
            pipeline=plan.pipeline,
            name=plan.name,
            steps=len(runner.selected),
            workdir=plan.workdir,
            targets=list(request.targets),
            selected=list(runner.selected),
            max_cost=request.max_cost,
            **({"shard": str(request.shard)} if request.shard is not None else {}),
        )
        if folder.created:
            folder.write_manifest(manifest)
        status = _rounds(runner, folder, request)
    except (KeyboardInterrupt, interrupt.Interrupted):
        status = JobStatus.CANCELLED
    finally:
        remote = runner.workspace.remote
        if remote is not None:
            _keep_tally(runner.workspace, remote)
        if remote is not None and remote.problem is not None:
            runner.events.emit(
                "cache.remote_skipped",
                level="error" if request.remote_required else "warning",
                remote=remote.settings.url,
                message=remote.problem,
            )
            if request.remote_required and status == JobStatus.SUCCEEDED:
                status = JobStatus.FAILED
        _close(runner.events, folder, manifest, status, started)
    return status


def _rounds(runner: Runner, folder: RunFolder, request: Request) -> JobStatus:
    """Build, planning again while steps planned from other steps' outputs could not stand
    (those outputs changed, or did not exist yet); the job's status."""
    done: set[str] = set()
    while True:
        status = runner.run()
        completed = runner.completed() - done
        done |= completed
        if status != JobStatus.SUCCEEDED or not _waiting(runner, request.targets):
            return status
        try:
            following = _next_round(runner, folder, request, done) if completed else None
        except PipelineError as exc:  # what a step wrote cannot be planned from
            runner.events.emit("plan.failed", level="error", message=exc.render())
            return JobStatus.FAILED
        if following is None:  # planning again would not get further
            groups = ", ".join(f"'{g}'" for g in runner.plan.waiting(request.targets))
            runner.events.emit(
                "plan.failed",
                level="error",
                message=f"the groups {groups} could not be planned though the steps they"
                " wait for ran",
            )
            return JobStatus.FAILED
        runner = following


def _waiting(runner: Runner, targets: tuple[str, ...]) -> bool:
    """Whether steps of the round, or groups the targets ask for, wait for a new plan."""
    return bool(runner.schedule.held or runner.plan.waiting(targets))


def _next_round(
    runner: Runner, folder: RunFolder, request: Request, done: set[str]
) -> Runner | None:
    """A runner for the steps a new plan adds, now that the outputs planning waited for are
    written; None when it adds none."""
    plan, pipeline = open_plan(request, keep=True, fresh=True)  # the writers just ran
    stuck = [
        plan.unplannable[group]
        for group, after in plan.waiting(request.targets).items()
        if group in plan.unplannable and set(after) <= done
    ]
    if stuck:  # the steps it waits for are done: their output is what it is
        raise PipelineError.at("\n".join(stuck), None)
    selected = [s for s in _first_round(request, plan) if s not in done]
    if not selected:
        return None
    selected, foreign = _share(request, plan, selected)
    after = _planned_after(runner, done, request.targets)
    runner.events.emit("job.replanned", selected=selected, after=after)
    workspace = runner.workspace.replanned(plan)
    workspace.forced = _forced(request, plan)
    return Runner(
        workspace, selected, runner.options, runner.events, folder, pipeline, _kinds, foreign
    )


def _planned_after(runner: Runner, done: set[str], targets: tuple[str, ...]) -> list[str]:
    """The steps whose outputs the new plan expands from: the writers of what deferred steps
    and groups waited for."""
    schedule, plan = runner.schedule, runner.plan
    deferred = [s for s in schedule.held if schedule.status[s] == Status.DEFERRED]
    writers = {p for s in deferred for p in plan.steps[s].preds if p in done}
    writers.update(p for producers in plan.waiting(targets).values() for p in producers)
    return sorted(writers)


LEVELS = {JobStatus.SUCCEEDED: "info", JobStatus.CANCELLED: "warning"}
"""The level of a job's end event (error when it failed)."""


def _close(
    events: EventLog, folder: RunFolder, manifest: Manifest, status: JobStatus, started: float
) -> None:
    """Write the job's end event and its final manifest (failed if events went unwritten), or
    for a build that changed nothing, its line in the run history."""
    if events.failure is not None and status == JobStatus.SUCCEEDED:
        status = JobStatus.FAILED
    events.emit(
        f"job.{status}",
        level=LEVELS.get(status, "error"),
        duration_s=round(time.monotonic() - started, 3),
        counts=manifest.counts(),
        pending_steps=manifest.pending_steps(),
    )
    if not events.is_held:
        from orchestrator.record import history

        folder.write_manifest(manifest)
        history.prune(folder.workdir, manifest.job_id)
    elif status == JobStatus.SUCCEEDED:
        try:
            runs.record_unchanged(folder.workdir, manifest)
        except IoFailure as exc:
            events.failure = events.failure or exc


def _kinds() -> Mapping[str, Kind]:
    from orchestrator.steps import kinds

    return kinds()

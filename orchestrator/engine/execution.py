"""Running one step: from the saved plan when it holds the step's command (nothing else to
load), otherwise through its kind with the loaded pipeline; the build's providers, and the
secrets to mask."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.core.errors import StepFailed

OutputListener = Callable[[str, str], None]
"""Given a step's id and each line of its output as the step writes it (`orch build -v`)."""

if TYPE_CHECKING:
    from orchestrator.language.pipeline import LoadedPipeline, Step
    from orchestrator.plan.compiled import PlannedStep
    from orchestrator.providers import Providers
    from orchestrator.providers.budget import Budget
    from orchestrator.record.events import EventLog
    from orchestrator.record.runs import RunFolder
    from orchestrator.steps import Kind, Outcome
    from orchestrator.steps.commands import Command


class PipelineOnDemand:
    """The loaded pipeline of a plan: the one given, or loaded on the first call (a build from
    a saved plan may never need it)."""

    def __init__(
        self,
        load: Callable[[], LoadedPipeline] | None = None,
        loaded: LoadedPipeline | None = None,
    ) -> None:
        self._load = load
        self._loaded = loaded

    def __call__(self) -> LoadedPipeline:
        if self._loaded is None:
            assert self._load is not None, "a pipeline on demand needs a pipeline or a loader"
            self._loaded = self._load()
        return self._loaded

    @property
    def loaded(self) -> bool:
        """Whether the pipeline is loaded already."""
        return self._loaded is not None


class Execution:
    """Runs steps; the loaded pipeline and the providers are made on first use, and the
    providers are closed by `aclose`."""

    def __init__(
        self,
        workdir: Path,
        pipeline: PipelineOnDemand,
        kinds: Callable[[], Mapping[str, Kind]],
        events: EventLog,
        folder: RunFolder,
        *,
        offline: bool = False,
        sandboxed: bool = False,
        budget: Budget | None = None,
        batch: bool = False,
        output: OutputListener | None = None,
    ) -> None:
        self.workdir = workdir
        self.pipeline = pipeline
        self.budget = budget
        self.batch = batch
        self.kinds = kinds
        self.events = events
        self.folder = folder
        self.offline = offline
        self.sandboxed = sandboxed
        self.output = output
        self._providers: Providers | None = None
        self._masked_environment = False

    def step(self, step_id: str) -> tuple[Step, Kind]:
        """A step as planned, and its kind."""
        step = self.pipeline().steps[step_id]
        kind = self.kinds().get(step.kind)
        if kind is None:
            raise StepFailed("unsupported", f"{step.kind} steps cannot run in this version")
        return step, kind

    def runs_commands(self, step: PlannedStep) -> bool:
        """Whether the step starts the user's commands."""
        return step.command is not None or self.kinds()[step.kind].runs_commands

    def written_by_orch(self, step: PlannedStep) -> tuple[str, ...]:
        """The outputs orch writes itself from what the step produced."""
        if step.command is not None:
            return () if step.command.stdout is None else (step.command.stdout,)
        full, kind = self.step(step.id)
        return kind.written_by_orch(full)

    async def run(self, step: PlannedStep) -> Outcome:
        """Run one step; its log is masked once it ends."""
        import asyncio

        log = self.folder.log(step.id)
        try:
            if step.command is not None:
                return await self._run_command(step, step.command, log)
            return await self._run_kind(step, log)
        finally:
            if self.events.masker:  # with no secret to mask, no thread to start
                await asyncio.shield(asyncio.to_thread(self.events.masker.file, log))

    async def _run_command(self, step: PlannedStep, command: Command, log: Path) -> Outcome:
        """Run a shell step from its planned command, in the real environment: the
        pipeline's whole environment, as a command is planned only without dotenv files."""
        from orchestrator.steps import commands

        environ = dict(os.environ)
        self._mask_secrets_of(environ)
        place = commands.Place(
            step.id,
            self.workdir,
            step.outputs,
            log,
            self._scratch(log),
            self.events,
            sandboxed=self.sandboxed,
            output=self._output_of(step.id),
        )
        return await commands.run(place, command, environ)

    async def _run_kind(self, planned: PlannedStep, log: Path) -> Outcome:
        """Run a step through its kind, with the loaded pipeline. The outputs of other steps
        nested in its own (`nested`) it must not touch."""
        from orchestrator.steps import StepContext

        step, kind = self.step(planned.id)
        pipeline = self.pipeline()
        self._mask_secrets_of(pipeline.env)
        context = StepContext(
            pipeline,
            step,
            log,
            self._scratch(log),
            self.events,
            providers=self.providers,
            others=planned.nested,
            sandboxed=self.sandboxed,
            output=self._output_of(planned.id),
        )
        return await kind.execute(context)

    def _scratch(self, log: Path) -> Path:
        """The step's own folder for temporary files."""
        return self.folder.path / "scratch" / log.stem

    def _output_of(self, step_id: str) -> Callable[[str], None] | None:
        """What hands each line of a step's output on to `output`, secrets masked."""
        output = self.output
        if output is None:
            return None
        masker = self.events.masker
        return lambda line: output(step_id, masker.text(line))

    def providers(self) -> Providers:
        """The build's providers, created on first use."""
        if self._providers is None:
            from orchestrator.providers import Providers

            pipeline = self.pipeline()
            self._providers = Providers(
                pipeline.providers,
                pipeline.env,
                pipeline.workdir,
                offline=self.offline,
                budget=self.budget,
                batch=self.batch,
            )
            for name in pipeline.providers:
                self.events.masker.add(self._providers.settings(name).secrets())
        return self._providers

    async def aclose(self) -> None:
        """Close the providers' connections, if any were made."""
        if self._providers is not None:
            await self._providers.aclose()

    def _mask_secrets_of(self, environment: Mapping[str, str]) -> None:
        """Mask the secrets of the steps' environment (with its dotenv files), once: a step
        runs from its planned command only when that environment is the real one."""
        if not self._masked_environment:
            from orchestrator.record.masking import secret_values

            self.events.masker.add(secret_values(environment))
            self._masked_environment = True

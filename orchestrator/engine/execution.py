"""Running one step's kind: its context, the build's providers, and the secrets to mask."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from orchestrator.core.errors import StepFailed

OutputListener = Callable[[str, str], None]
"""Given a step's id and each line of its output as the step writes it (`orch build -v`)."""

if TYPE_CHECKING:
    from orchestrator.language.pipeline import LoadedPipeline, Step
    from orchestrator.providers import Providers
    from orchestrator.providers.budget import Budget
    from orchestrator.record.events import EventLog
    from orchestrator.record.runs import RunFolder
    from orchestrator.steps import Kind, Outcome


class Execution:
    """Runs steps through their kinds; the loaded pipeline and the providers are made on first
    use, and the providers are closed by `aclose`."""

    def __init__(
        self,
        pipeline: Callable[[], LoadedPipeline],
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
        self._masked_pipeline = False

    def step(self, step_id: str) -> tuple[Step, Kind]:
        """A step as planned, and its kind."""
        step = self.pipeline().steps[step_id]
        kind = self.kinds().get(step.kind)
        if kind is None:
            raise StepFailed("unsupported", f"{step.kind} steps cannot run in this version")
        return step, kind

    def runs_commands(self, kind: str) -> bool:
        """Whether steps of `kind` start the user's commands."""
        return self.kinds()[kind].runs_commands

    async def run(self, step_id: str, others: tuple[str, ...]) -> Outcome:
        """Run one step; its log is masked once it ends. `others`: the outputs of other steps
        nested in its own, which it must not touch."""
        import asyncio

        from orchestrator.steps import StepContext

        step, kind = self.step(step_id)
        pipeline = self.pipeline()
        self._mask_secrets_of(pipeline)
        log = self.folder.log(step_id)
        context = StepContext(
            pipeline,
            step,
            log,
            self.folder.path / "scratch" / log.stem,
            self.events,
            providers=self.providers,
            others=others,
            sandboxed=self.sandboxed,
            output=self._output_of(step_id),
        )
        try:
            return await kind.execute(context)
        finally:
            if self.events.masker:  # with no secret to mask, no thread to start
                await asyncio.shield(asyncio.to_thread(self.events.masker.file, log))

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

    def _mask_secrets_of(self, pipeline: LoadedPipeline) -> None:
        """Mask the secrets the pipeline's environment adds (its dotenv files), once."""
        if not self._masked_pipeline:
            from orchestrator.record.masking import secret_values

            self.events.masker.add(secret_values(pipeline.env))
            self._masked_pipeline = True

"""Shell steps: `/bin/sh -ec` in the workdir (or `cwd`), in a process group of their own (run
by `commands`).

stdout and stderr go to the step's log; with `stdout:` the standard output is captured to a
scratch file and streamed to its declared path atomically once the command succeeds (after a
failure it is appended to the log instead). A timeout or
a cancellation terminates the whole process group: SIGTERM, then SIGKILL after a grace period.
Sandboxed (`orch build --sandbox`), the command may write only beneath the folders of the
outputs it writes, its scratch folder (its private TMPDIR) and its log (see `sandbox`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from orchestrator.language.spec import StepBase
from orchestrator.steps import Kind, Planning, commands
from orchestrator.steps.base import Outcome, StepContext
from orchestrator.steps.commands import Command, Place, needs_rendering

if TYPE_CHECKING:
    from orchestrator.language.pipeline import Step


class ShellStep(StepBase):
    """Runs a shell command."""

    KEYS: ClassVar[tuple[str, ...]] = ("run",)

    kind: Literal["shell"] = "shell"
    run: str
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    cwd: str | None = Field(None, description="Folder to run in, relative to the workdir.")
    stdout: str | None = Field(None, description="File that receives the command's stdout.")

    def output_fields(self) -> list[tuple[tuple[str | int, ...], str]]:
        """The declared outputs, and the `stdout` file."""
        stdout = [(("stdout",), self.stdout)] if self.stdout is not None else []
        return [*super().output_fields(), *stdout]


def plan(step: Planning) -> tuple[dict[str, Any], None]:
    """`run` and the `env` values are content; `cwd` is structure. The pipeline's `env` is
    part of every shell step's `env`, the step's own values winning."""
    spec = step.spec
    assert isinstance(spec, ShellStep)
    cwd = step.path(("cwd",), spec.cwd) if spec.cwd is not None else None
    env = {
        name: step.content(("env", name), value, pipeline=True)
        for name, value in step.pipeline_env.items()
        if name not in spec.env
    }
    env.update({name: step.content(("env", name), value) for name, value in spec.env.items()})
    return {"run": step.content(("run",), spec.run), "env": env, "cwd": cwd}, None


async def execute(ctx: StepContext) -> Outcome:
    """Render the command and its environment with the step's inputs, then run it (see
    `commands.run`)."""
    spec = ctx.step.spec
    assert isinstance(spec, ShellStep)
    definition = ctx.step.definition
    command = Command(
        run=str(ctx.render(definition["run"])),
        env={k: str(v) for k, v in ctx.render(definition["env"]).items()},
        cwd=definition.get("cwd"),
        stdout=_stdout_output(ctx.step),
        timeout_s=spec.timeout_s,
    )
    place = Place(
        ctx.step.id,
        ctx.workdir,
        ctx.step.outputs,
        ctx.log,
        ctx.scratch,
        ctx.events,
        sandboxed=ctx.sandboxed,
        output=ctx.output,
    )
    return await commands.run(place, command, ctx.pipeline.env)


def ready(step: Step) -> Command | None:
    """The command of a step whose command and environment need no rendering, for the saved
    plan (None: rendered when the step runs)."""
    spec = step.spec
    assert isinstance(spec, ShellStep)
    definition = step.definition
    texts = [definition["run"], *definition["env"].values()]
    if not all(isinstance(text, str) and not needs_rendering(text) for text in texts):
        return None
    return Command(
        run=definition["run"],
        env=dict(definition["env"]),
        cwd=definition.get("cwd"),
        stdout=_stdout_output(step),
        timeout_s=spec.timeout_s,
    )


def _stdout_output(step: Step) -> str | None:
    """The declared output the command's standard output goes to, if any."""
    return next(iter(_written_by_orch(step)), None)


def _written_by_orch(step: Step) -> tuple[str, ...]:
    """The `stdout:` capture: orch writes it once the command succeeds."""
    return tuple(path for path in step.outputs if step.field_of(path)[-1] == "stdout")


KIND = Kind(
    ShellStep,
    plan=plan,
    execute=execute,
    written_by_orch=_written_by_orch,
    runs_commands=True,
    ready=ready,
)

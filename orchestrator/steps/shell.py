"""Shell steps: `/bin/sh -ec` in the workdir (or `cwd`), in a process group of their own.

stdout and stderr go to the step's log; with `stdout:` the standard output is captured to a
scratch file and streamed to its declared path atomically once the command succeeds (after a
failure it is appended to the log instead). A timeout or
a cancellation terminates the whole process group: SIGTERM, then SIGKILL after a grace period.
Sandboxed (`orch build --sandbox`), the command may write only beneath the folders of the
outputs it writes, its scratch folder (its private TMPDIR) and its log (see `sandbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from orchestrator.core.errors import StepFailed
from orchestrator.core.paths import escapes_through_symlink, is_dir
from orchestrator.language.spec import StepBase
from orchestrator.steps import Kind, Planning, processes, streaming
from orchestrator.steps.base import Outcome, StepContext
from orchestrator.store.layout import StateFolder

if TYPE_CHECKING:
    from orchestrator.language.pipeline import Step

SHELL = "/bin/sh"
GRACE_S = 5.0
SANDBOX_HINT = " (sandboxed: writes outside the declared outputs are refused)"


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
    """Run the command; fail on a non-zero exit, a timeout or a missing output."""
    spec = ctx.step.spec
    assert isinstance(spec, ShellStep)
    definition = ctx.step.definition
    command = str(ctx.render(definition["run"]))
    env = {**ctx.pipeline.env, **{k: str(v) for k, v in ctx.render(definition["env"]).items()}}
    cwd = ctx.workdir / definition["cwd"] if definition.get("cwd") else ctx.workdir
    ctx.make_output_folders()
    capture = None
    if spec.stdout is not None:
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        capture = ctx.scratch / "stdout"
    shown = ctx.events.masker.text(command.rstrip("\n"))
    header = f"$ {shown}\n".encode()
    start = ctx.log.stat().st_size if ctx.log.exists() else 0
    with _with_excerpt(ctx.log, start + len(header)):
        code = await _logged_run(ctx, header, start, command, env, str(cwd), capture)
        if code != 0:
            if capture is not None and spec.stdout is not None:
                _keep_in_log(ctx.log, capture, spec.stdout)
            hint = SANDBOX_HINT if ctx.sandboxed else ""
            raise StepFailed("exit", f"exited with code {code} (log: {ctx.log}){hint}")
    written = []
    if capture is not None:
        (stdout_path,) = [p for p in ctx.step.outputs if ctx.step.field_of(p)[-1] == "stdout"]
        written.append(ctx.write_file(stdout_path, capture))
        capture.unlink()
    return Outcome(written=written)


@contextlib.contextmanager
def _confined(
    ctx: StepContext, env: dict[str, str], capture: Path | None
) -> Iterator[Callable[[], None] | None]:
    """When sandboxed, the `preexec_fn` restricting the command to its own folders, with a
    private TMPDIR (set in `env`) removed afterwards; None otherwise."""
    if not ctx.sandboxed:
        yield None
        return
    from orchestrator.steps.sandbox import restriction

    tmp = ctx.scratch / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp)
    files = [ctx.log] if capture is None else [ctx.log, capture]
    try:
        with restriction([*_output_folders(ctx), tmp], files) as rules:
            yield rules.apply
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _logged_run(
    ctx: StepContext,
    header: bytes,
    start: int,
    command: str,
    env: dict[str, str],
    cwd: str,
    capture: Path | None,
) -> int:
    """Run the command with its output in the step's log (stdout in `capture` if given), after
    `header`; the log is followed from byte `start` for `ctx.output` (`orch build -v`)."""
    spec = ctx.step.spec
    records = StateFolder(ctx.workdir).processes
    with ctx.log.open("ab") as log:
        log.write(header)
        log.flush()
        with capture.open("wb") if capture else log as out, _confined(ctx, env, capture) as apply:
            async with streaming.following(ctx.log, start, ctx.output):
                return await _run(command, env, cwd, out, log, spec.timeout_s, records, apply)


@contextlib.contextmanager
def _with_excerpt(log: Path, start: int) -> Iterator[None]:
    """A failure inside carries the last lines the command wrote to its log from byte `start`
    on (see `logtail`)."""
    try:
        yield
    except StepFailed as exc:
        from orchestrator.record.logtail import tail

        excerpt = tail(log, start)
        if excerpt is not None:
            exc.details["excerpt"] = excerpt.as_event_data()
        raise


def _output_folders(ctx: StepContext) -> list[Path]:
    """The folders of the outputs the command writes (made if missing), inside the workdir."""
    found = []
    for output in ctx.step.outputs:
        if output in _written_by_orch(ctx.step):
            continue
        folder = output if is_dir(output) else posixpath.dirname(output)
        if escapes_through_symlink(ctx.workdir, folder):
            continue  # never granted: orch refuses such outputs after the run
        path = ctx.workdir / folder
        path.mkdir(parents=True, exist_ok=True)
        found.append(path)
    return found


def _keep_in_log(log: Path, capture: Path, destination: str) -> None:
    """Append a failed command's captured stdout to its log, where a person looks first."""
    with log.open("ab") as out:
        out.write(f"\n# stdout (not written to {destination}, as the command failed):\n".encode())
        with capture.open("rb") as captured:
            shutil.copyfileobj(captured, out)
    capture.unlink()


async def _run(
    command: str,
    env: dict[str, str],
    cwd: str,
    out: IO[bytes],
    log: IO[bytes],
    timeout_s: float | None,
    records: Path,
    preexec: Callable[[], None] | None = None,
) -> int:
    """The command's exit status; it is recorded in `records` from before it starts until it
    ends."""
    token = processes.record(records)  # before it starts: a kill -9 of orch at any moment
    try:
        try:
            process = await asyncio.create_subprocess_exec(
                SHELL,
                "-ec",
                command,
                cwd=cwd,
                env={**env, processes.TOKEN_VARIABLE: token},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            # ValueError: a NUL character, an environment name with '='
            raise StepFailed("exit", f"cannot start the command: {exc}") from exc
        return await _wait(process, timeout_s)
    finally:
        processes.forget(records, token)


async def _wait(process: asyncio.subprocess.Process, timeout_s: float | None) -> int:
    """The process's exit status; its process group is ended on timeout or cancellation."""
    try:
        return await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        await _end_group(process)
        raise StepFailed("timeout", f"timed out after {timeout_s:g} s") from None
    except asyncio.CancelledError:
        await _end_group(process)
        raise


async def _end_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after the grace period."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(process.wait()), GRACE_S)
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _written_by_orch(step: Step) -> tuple[str, ...]:
    """The `stdout:` capture: orch writes it once the command succeeds."""
    return tuple(path for path in step.outputs if step.field_of(path)[-1] == "stdout")


KIND = Kind(
    ShellStep, plan=plan, execute=execute, written_by_orch=_written_by_orch, runs_commands=True
)

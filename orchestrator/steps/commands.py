"""Running a shell step's command: `/bin/sh -ec` in a process group of its own, its output in
the step's log, a timeout or a cancellation ending the whole group (SIGTERM, then SIGKILL after
a grace period).

A `Command` is what runs, its templates already rendered. One whose text needs no rendering
(no template syntax) is kept in the saved plan, so a build that reruns such a step does not
load the pipeline at all: it runs the command from the plan, in the real environment, with the
same code as any other shell step. This module imports asyncio and the step base only when a
command runs, so that reading a saved plan stays light.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.core.errors import StepFailed
from orchestrator.core.paths import escapes_through_symlink, is_dir

if TYPE_CHECKING:
    import asyncio

    from orchestrator.record.events import EventLog
    from orchestrator.steps.base import Outcome

SHELL = "/bin/sh"
GRACE_S = 5.0
SANDBOX_HINT = " (sandboxed: writes outside the declared outputs are refused)"
TEMPLATE_MARKS = ("{{", "{%", "{#", "\r")
"""What makes a text a template whose rendering may differ from the text itself (the
template engine also turns CR LF line ends into LF)."""


@dataclass(frozen=True)
class Command:
    """What a shell step runs: its command and environment rendered, where it runs, where its
    standard output goes (a declared output, or None: into the log) and its time limit."""

    run: str
    env: Mapping[str, str] = field(default_factory=dict)
    """The step's own variables (the pipeline's `env` among them), over the real ones."""
    cwd: str | None = None
    stdout: str | None = None
    timeout_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data for a saved plan."""
        return {
            "run": self.run,
            "env": dict(self.env),
            "cwd": self.cwd,
            "stdout": self.stdout,
            "timeout_s": self.timeout_s,
        }

    @classmethod
    def from_json(cls, data: Any) -> Command:
        """The command `to_json` saved; ValueError for anything else (a saved plan is read
        back as untrusted)."""
        if type(data) is not dict or set(data) != {"run", "env", "cwd", "stdout", "timeout_s"}:
            raise ValueError("a saved command is not what a save writes")
        env = data["env"]
        if type(env) is not dict or not all(type(v) is str for v in env.values()):
            raise ValueError("a saved command's env is not a mapping of strings")
        if type(data["run"]) is not str or not all(
            data[name] is None or type(data[name]) is str for name in ("cwd", "stdout")
        ):
            raise ValueError("a saved command's text fields are not strings")
        timeout = data["timeout_s"]
        if timeout is not None and (type(timeout) not in (int, float) or timeout <= 0):
            raise ValueError("a saved command's timeout is not a positive number")
        return cls(data["run"], env, data["cwd"], data["stdout"], timeout)


def needs_rendering(text: str) -> bool:
    """Whether rendering `text` as a template could give anything but `text` itself."""
    return any(mark in text for mark in TEMPLATE_MARKS)


@dataclass(frozen=True)
class Place:
    """Where one step's command runs and reports: the workdir, the step's declared outputs,
    its log and scratch folder, and the build's events."""

    step_id: str
    workdir: Path
    outputs: tuple[str, ...]
    log: Path
    scratch: Path
    events: EventLog
    sandboxed: bool = False
    output: Callable[[str], None] | None = None
    """Given each line of the command's output as it is written (`orch build -v`), if set."""


async def run(place: Place, command: Command, environ: Mapping[str, str]) -> Outcome:
    """Run the command over the environment `environ`; fail on a non-zero exit or a timeout.
    The `stdout` output is written once the command succeeds."""
    from orchestrator.steps.base import Outcome, make_output_folders, write_output_file

    env = {**environ, **command.env}
    cwd = place.workdir / command.cwd if command.cwd else place.workdir
    make_output_folders(place.workdir, place.outputs)
    capture = None
    if command.stdout is not None:
        place.scratch.mkdir(parents=True, exist_ok=True)
        capture = place.scratch / "stdout"
    shown = place.events.masker.text(command.run.rstrip("\n"))
    header = f"$ {shown}\n".encode()
    start = place.log.stat().st_size if place.log.exists() else 0
    with _with_excerpt(place.log, start + len(header)):
        code = await _logged_run(place, command, header, start, env, str(cwd), capture)
        if code != 0:
            if capture is not None and command.stdout is not None:
                _keep_in_log(place.log, capture, command.stdout)
            hint = SANDBOX_HINT if place.sandboxed else ""
            raise StepFailed("exit", f"exited with code {code} (log: {place.log}){hint}")
    written = []
    if capture is not None and command.stdout is not None:
        result = write_output_file(place.workdir, command.stdout, capture)
        place.events.emit("file.written", place.step_id, **result.as_event_data())
        written.append(result)
        capture.unlink()
    return Outcome(written=written)


async def _logged_run(
    place: Place,
    command: Command,
    header: bytes,
    start: int,
    env: dict[str, str],
    cwd: str,
    capture: Path | None,
) -> int:
    """Run the command with its output in the step's log (stdout in `capture` if given), after
    `header`; the log is followed from byte `start` for `place.output` (`orch build -v`)."""
    from orchestrator.steps import streaming
    from orchestrator.store.layout import StateFolder

    records = StateFolder(place.workdir).processes
    with place.log.open("ab") as log:
        log.write(header)
        log.flush()
        with (
            capture.open("wb") if capture else log as out,
            _confined(place, command, env, capture) as apply,
        ):
            async with streaming.following(place.log, start, place.output):
                return await _run(command, env, cwd, out, log, records, apply)


@contextlib.contextmanager
def _confined(
    place: Place, command: Command, env: dict[str, str], capture: Path | None
) -> Iterator[Callable[[], None] | None]:
    """When sandboxed, the `preexec_fn` restricting the command to its own folders, with a
    private TMPDIR (set in `env`) removed afterwards; None otherwise."""
    if not place.sandboxed:
        yield None
        return
    from orchestrator.steps.sandbox import restriction

    tmp = place.scratch / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp)
    files = [place.log] if capture is None else [place.log, capture]
    try:
        with restriction([*_output_folders(place, command), tmp], files) as rules:
            yield rules.apply
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def _output_folders(place: Place, command: Command) -> list[Path]:
    """The folders of the outputs the command writes (made if missing), inside the workdir."""
    found = []
    for output in place.outputs:
        if output == command.stdout:
            continue
        folder = output if is_dir(output) else posixpath.dirname(output)
        if escapes_through_symlink(place.workdir, folder):
            continue  # never granted: orch refuses such outputs after the run
        path = place.workdir / folder
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
    command: Command,
    env: dict[str, str],
    cwd: str,
    out: IO[bytes],
    log: IO[bytes],
    records: Path,
    preexec: Callable[[], None] | None = None,
) -> int:
    """The command's exit status; it is recorded in `records` from before it starts until it
    ends."""
    import asyncio

    from orchestrator.steps import processes

    token = processes.record(records)  # before it starts: a kill -9 of orch at any moment
    try:
        try:
            process = await asyncio.create_subprocess_exec(
                SHELL,
                "-ec",
                command.run,
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
        return await _wait(process, command.timeout_s)
    finally:
        processes.forget(records, token)


async def _wait(process: asyncio.subprocess.Process, timeout_s: float | None) -> int:
    """The process's exit status; its process group is ended on timeout or cancellation."""
    import asyncio

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
    import asyncio

    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(process.wait()), GRACE_S)
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)

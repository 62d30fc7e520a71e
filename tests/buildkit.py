"""Helpers for end-to-end build tests: a project folder, `orch` in-process or as a process,
readers for runs, events, manifests and the lock, and process-group bookkeeping.

Every step of the test pipelines appends its name to `runs.log` when its command runs, so
`Project.new_runs()` says exactly which commands ran since the last look.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner

from orchestrator.cli.commands import cli
from orchestrator.store.lockfile import LockEntry, read_lock

T = TypeVar("T")
Event = dict[str, Any]

COUNTER = "runs.log"
RUNS = Path(".orch") / "runs"


def rendered(step: Any, field: str, workdir: Path) -> Any:
    """What a content field of a loaded step renders to when the step runs."""
    from orchestrator.language.templating import Reader, Renderer

    context = {**step.scope, "read": Reader(step.inputs, workdir, step.excludes)}
    return Renderer().render_value(step.definition[field], context)


HANG_S = 120.0
"""How long a wait lasts before it counts as a hang: far longer than anything takes on a loaded
machine, since it only bounds a test that would otherwise never end."""


def wait_for(
    predicate: Callable[[], T | None], timeout: float = HANG_S, what: str = "a condition"
) -> T:
    """The first truthy value of `predicate`, checked every 5 ms at first, then less often
    (up to every 50 ms, so a long wait does not take the CPU from what it waits on), until
    `timeout`."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)


TIME = re.compile(r"^\d\d:\d\d:\d\d ")


def untimed(line: str) -> str:
    """A progress line without its leading `HH:MM:SS `."""
    return TIME.sub("", line)


def ran(output: str) -> list[str]:
    """The steps whose `run` line appears in a build's output, in order."""
    lines = (untimed(line) for line in output.splitlines())
    return [line.split()[1] for line in lines if line.startswith("run ")]


def read_events(run: Path) -> list[Event]:
    """The complete lines of a run's events.jsonl (a line still being written is left out)."""
    try:
        text = (run / "events.jsonl").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1]]  # "\x85" is not a line end


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Build:
    """One `orch` invocation: its exit code, output and the run folder it created (if any)."""

    exit_code: int
    stdout: str
    stderr: str
    run: Path | None
    summary: dict[str, Any] | None = None
    """A build that changed nothing: its line in the run history (it has no run folder)."""

    @property
    def lines(self) -> list[str]:
        """The output lines, without the time that starts each progress line."""
        return [untimed(line) for line in self.stdout.splitlines()]

    def events(self, type: str | None = None, step: str | None = None) -> list[Event]:
        """The run's events ([] for a build that changed nothing: it keeps none)."""
        if self.run is None:
            assert self.summary is not None, "this invocation started no run"
            return []
        return [
            event
            for event in read_events(self.run)
            if (type is None or event["type"] == type) and (step is None or event["step"] == step)
        ]

    @property
    def unchanged(self) -> bool:
        """Whether this was a build that changed nothing: every step up to date, and no run
        folder (the run history got a line instead)."""
        said = re.search(r"all \d+ steps? up to date\n$", self.stdout) is not None
        return self.run is None and self.summary is not None and self.exit_code == 0 and said

    def started(self) -> list[str]:
        """The steps whose command this build started, in order."""
        return [event["step"] for event in self.events("step.started")]

    def manifest(self) -> dict[str, Any]:
        """The run's manifest; for a build that changed nothing, its history line."""
        if self.run is None and self.summary is not None:
            return self.summary
        assert self.run is not None, "this invocation started no run"
        data: dict[str, Any] = json.loads((self.run / "manifest.json").read_text())
        return data

    def statuses(self) -> dict[str, str]:
        """Each selected step's status in the manifest."""
        return {step: record["status"] for step, record in self.manifest()["steps"].items()}


@dataclass
class Project:
    """A workdir holding a pipeline `orch.yaml`; `orch` runs in it with the cwd set to it."""

    root: Path
    _seen: int = 0
    pid_files: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    # ------------------------------------------------------------------ files

    def write(self, relative: str, content: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        return path

    def read(self, relative: str) -> str:
        return (self.root / relative).read_text(encoding="utf-8")

    def exists(self, relative: str) -> bool:
        return os.path.lexists(self.root / relative)

    def pipeline(self, text: str) -> Path:
        return self.write("orch.yaml", textwrap.dedent(text))

    def new_runs(self) -> list[str]:
        """The step commands that ran since the last call (lines appended to runs.log)."""
        path = self.root / COUNTER
        lines = path.read_text().splitlines() if path.exists() else []
        new, self._seen = lines[self._seen :], len(lines)
        return new

    def lock(self) -> dict[str, LockEntry]:
        return read_lock(self.root / "orch.lock")

    def run_folders(self) -> set[Path]:
        folder = self.root / RUNS
        return {p for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()

    # ------------------------------------------------------------------ orch in-process

    def orch(self, *args: str) -> Build:
        """Run `orch ARGS` in-process (the cwd must be the project root)."""
        assert Path.cwd() == self.root, "use the `project` fixture, which changes into the root"
        before, noted = self.run_folders(), self.unchanged_builds()
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        summaries = self.unchanged_builds()[len(noted) :]
        summary = summaries[-1] if summaries else None
        run = self._new_run(before)
        return Build(result.exit_code, result.stdout, result.stderr, run, summary)

    def unchanged_builds(self) -> list[dict[str, Any]]:
        """The run history's lines: one per build that changed nothing."""
        path = self.root / RUNS / "history.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) if line.startswith('{"job_id": "2') else {} for line in lines]

    def _new_run(self, before: set[Path]) -> Path | None:
        new = self.run_folders() - before
        assert len(new) <= 1, f"one invocation made several runs: {new}"
        return new.pop() if new else None

    # ------------------------------------------------------------------ orch as a process

    def spawn(self, *args: str, session: bool = False) -> subprocess.Popen[str]:
        """Start `python -m orchestrator ARGS` in the root; the fixture reaps it. With
        `session`, orch leads a session and process group of its own."""
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *args],
            cwd=self.root,
            env={**os.environ, "CI": "1", "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=session,
        )
        self.processes.append(process)
        return process

    def wait_for_run(self, before: set[Path], process: subprocess.Popen[str]) -> Path:
        """The run folder a spawned build creates."""

        def created() -> Path | None:
            assert process.poll() is None, f"orch exited early: {process.communicate()}"
            new = self.run_folders() - before
            return new.pop() if new else None

        return wait_for(created, what="the run folder")

    def wait_for_event(
        self, run: Path, type: str, step: str, process: subprocess.Popen[str]
    ) -> Event:
        """Wait until the run's events show `type` for `step`."""

        def seen() -> Event | None:
            assert process.poll() is None, f"orch exited early: {process.communicate()}"
            found = [e for e in read_events(run) if e["type"] == type and e["step"] == step]
            return found[0] if found else None

        return wait_for(seen, what=f"{type} of {step}")

    # ------------------------------------------------------------------ step processes

    def step_group(self, pid_file: str) -> int:
        """The process group of a step that wrote `$$` (its shell's pid = its group) to a file."""
        self.pid_files.append(pid_file)

        def written() -> int | None:
            text = self.read(pid_file).strip() if self.exists(pid_file) else ""
            return int(text) if text.isdigit() else None

        return wait_for(written, what=pid_file)

    def cleanup(self) -> None:
        """Kill what a test may have left behind: step process groups and orch processes."""
        for pid_file in self.pid_files:
            with contextlib.suppress(OSError, ValueError):
                kill_group(int(self.read(pid_file)))
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `benchmarks/<script>` with `args` in a process of its own, with this checkout's
    orch importable; its output captured, its exit code left to the caller."""
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def live_members(pgid: int) -> list[int]:
    """Processes of a process group that are still alive (zombies do not count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def snapshot(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under root (root included): kind, mtime_ns, size and a content digest."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        stat = path.lstat()
        if path.is_symlink():
            kind, digest = "link", os.readlink(path)
        elif path.is_dir():
            kind, digest = "dir", ""
        else:
            kind, digest = "file", hashlib.sha256(path.read_bytes()).hexdigest()
        found[path.relative_to(root).as_posix()] = (kind, stat.st_mtime_ns, stat.st_size, digest)
    return found


def in_terminal(folder: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `orch ARGS` in a pseudo-terminal (xterm, 100 columns; `CI`, `NO_COLOR` and
    `ORCH_VERBOSE` left out of the environment unless `env` sets them): its exit code and
    everything it wrote, escapes and all, with newlines left as they are."""
    import pty
    import termios

    main, child = pty.openpty()
    modes = termios.tcgetattr(child)
    modes[1] &= ~termios.OPOST  # no "\n" -> "\r\n" translation
    termios.tcsetattr(child, termios.TCSANOW, modes)
    unset = ("CI", "NO_COLOR", "ORCH_VERBOSE")
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    environ.update(TERM="xterm-256color", COLUMNS="100", **(env or {}))
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=folder,
        env=environ,
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the terminal's other end is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    code = process.wait(timeout=60)
    return code, b"".join(chunks).decode("utf-8", errors="replace")

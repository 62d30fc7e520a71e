"""Run orch and peer build tools on the same generated work; print medians and orch/peer ratios.

Usage:
    python benchmarks/peers.py [--n 1000] [--runs 7] [--jobs 2] [--budget 180] [--timeout 600]
                               [--peers make,ninja,doit,task,snakemake,dvc,floor]
                               [--orch-tree PATH] [--quick] [--json]

Two works, each generated afresh in a temporary folder per tool and per round:

- "copy N": N independent one-file steps, step i runs `cp src/i.txt out/i.txt`;
- "DAG N": step i reads `src/i.txt` and the outputs of steps i-1 and i//2 (those that exist)
  and runs `cat src/i.txt out/(i-1).txt out/(i//2).txt | cksum > out/i.txt` (piped to `cksum`
  so that outputs stay a line long instead of doubling along the chain).

Three figures per work and tool, each the wall time of the whole process:

1. first build, in a fresh folder, at `--jobs` jobs for every tool (`orch build -j 2`,
   `make -r -j2`, `ninja -j2`, `doit -n 2`, `task --concurrency 2`, `snakemake -c 2`;
   `dvc repro` has no jobs setting and runs one stage at a time);
2. rebuild after one input changed (`src/k.txt`, k = N // 2): copy reruns one step, DAG reruns
   step k and everything downstream of it (N - k steps);
3. no-op build, everything up to date.

The "Python floor" is a no-op only: a minimal Python script, run as its own process, that reads
a JSON file of the work's input files (path -> sha256), stats and hashes each one and compares.

Within each round the tools run one after another (orch, make, ninja, doit, task, ...) for each
figure, so that they all see the same machine load. Checks, reported under "problems": every
output is right after each build; a rebuild rewrote exactly the outputs downstream of the
change; a no-op rewrote nothing and the tool said so (orch: `all N steps up to date`). A tool
that has used `--budget` seconds on a work (after at least one round) runs no more rounds.

Standard library only; peers missing from PATH (and from next to this interpreter) are listed as
"not installed". doit: `pip install -e '.[bench]'`; go-task: `pip install go-task-bin`.
Exits 1 if orch fails; problems and missed targets are reported but exit 0 unless `--strict`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("make", "ninja", "doit", "task", "snakemake", "dvc", "floor")
FIGURES = ("first", "rebuild", "noop")
FIGURE_TITLES = {
    "first": "first build",
    "rebuild": "rebuild after one input changed",
    "noop": "no-op build",
}
REBUILD_REFERENCE_S = 0.100  # "no-op + command time": the orch no-op median plus this


class BenchError(Exception):
    """The benchmark cannot go on (orch failed, a folder could not be set up, ...)."""


# --------------------------------------------------------------------------- generated work


@dataclass(frozen=True)
class Step:
    """One step of a work: step `index` reads `inputs` and writes `out/index.txt`."""

    index: int
    inputs: tuple[str, ...]
    parents: tuple[int, ...]

    @property
    def output(self) -> str:
        return f"out/{self.index}.txt"

    @property
    def command(self) -> str:
        if not self.parents:
            return f"cp src/{self.index}.txt {self.output}"
        return f"cat {' '.join(self.inputs)} | cksum > {self.output}"


@dataclass(frozen=True)
class Work:
    """N steps, the source edited before a rebuild, and the steps that rebuild must rerun."""

    name: str
    steps: tuple[Step, ...]
    edited: int
    reruns: frozenset[int]

    @property
    def n(self) -> int:
        return len(self.steps)


def copy_work(n: int) -> Work:
    steps = tuple(Step(i, (f"src/{i}.txt",), ()) for i in range(n))
    return Work("copy", steps, n // 2, frozenset({n // 2}))


def dag_parents(i: int) -> tuple[int, ...]:
    """Steps i-1 and i//2, those that exist, without repeats."""
    parents = [p for p in (i - 1, i // 2) if 0 <= p < i]
    return tuple(dict.fromkeys(parents))


def dag_work(n: int) -> Work:
    steps = []
    for i in range(n):
        parents = dag_parents(i)
        steps.append(Step(i, (f"src/{i}.txt", *(f"out/{p}.txt" for p in parents)), parents))
    k = n // 2
    return Work("DAG", tuple(steps), k, frozenset(range(k, n)))


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
        table.append(crc)
    return table


CRC_TABLE = _crc_table()


def cksum(data: bytes) -> bytes:
    """What POSIX `cksum` prints for `data` read from standard input."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC_TABLE[(crc >> 24) ^ byte]
    length = len(data)
    while length:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC_TABLE[(crc >> 24) ^ (length & 0xFF)]
        length >>= 8
    return f"{~crc & 0xFFFFFFFF} {len(data)}\n".encode()


def expected_outputs(work: Work, folder: Path) -> list[bytes]:
    """The content every output must have, from the sources now in `folder`."""
    outputs: list[bytes] = []
    for step in work.steps:
        source = (folder / "src" / f"{step.index}.txt").read_bytes()
        if step.parents:
            outputs.append(cksum(source + b"".join(outputs[p] for p in step.parents)))
        else:
            outputs.append(source)
    return outputs


def wrong_outputs(work: Work, folder: Path) -> str | None:
    """None if every output is right, else what is wrong."""
    wrong = []
    for step, expected in zip(work.steps, expected_outputs(work, folder), strict=True):
        path = folder / step.output
        if not path.is_file() or path.read_bytes() != expected:
            wrong.append(step.output)
    if not wrong:
        return None
    return f"{len(wrong)} of {work.n} outputs missing or wrong (first: {wrong[0]})"


def output_mtimes(work: Work, folder: Path) -> list[int | None]:
    mtimes: list[int | None] = []
    for step in work.steps:
        try:
            mtimes.append((folder / step.output).stat().st_mtime_ns)
        except FileNotFoundError:
            mtimes.append(None)
    return mtimes


def make_sources(work: Work, folder: Path) -> None:
    """`src/i.txt` holding `i` and an empty `out/` (make and orch do not create it)."""
    (folder / "src").mkdir(parents=True)
    (folder / "out").mkdir()
    for step in work.steps:
        (folder / "src" / f"{step.index}.txt").write_text(f"{step.index}\n")


# --------------------------------------------------------------------------- processes


@dataclass
class Result:
    wall_s: float
    cpu_s: float
    code: int
    output: str
    timed_out: bool


def _kill_group(pid: int, expired: threading.Event) -> None:
    expired.set()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str], timeout_s: float) -> Result:
    """Run `cmd` in its own process group to its end (or kill the group at `timeout_s`).

    CPU time is user + system time of the process and of the children it waited for.
    """
    expired = threading.Event()
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timer = threading.Timer(timeout_s, _kill_group, (proc.pid, expired))
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall_s = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode(errors="replace")
    cpu_s = usage.ru_utime + usage.ru_stime
    return Result(wall_s, cpu_s, proc.returncode, output, expired.is_set())


def bench_env(tree: Path) -> dict[str, str]:
    """A user's environment: bytecode written, no colour, CI mode, orch imported from `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree), CI="1", NO_COLOR="1", DVC_NO_ANALYTICS="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def find_executable(name: str) -> str | None:
    """The script next to this interpreter (not a pyenv shim), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


# --------------------------------------------------------------------------- tools


class Tool:
    """A build tool doing the generated work: its files, its command and what it says."""

    name = ""
    label = ""
    exe_name = ""
    figures: tuple[str, ...] = FIGURES

    def __init__(self, exe: str, jobs: int) -> None:
        self.exe = exe
        self.jobs = jobs

    def version(self, env: dict[str, str]) -> str:
        done = run([self.exe, "--version"], Path.cwd(), env, 60)
        lines = done.output.strip().splitlines()
        return lines[0].strip() if lines else "?"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def before_noop(self, work: Work, folder: Path) -> None:
        """Anything to do (untimed) before a no-op."""

    def check(self, figure: str, work: Work, output: str) -> str | None:
        """None if the tool's output fits `figure`, else what is wrong."""
        return None


class Orch(Tool):
    name = "orch"
    label = "orch build"

    def __init__(self, tree: Path, jobs: int) -> None:
        super().__init__(sys.executable, jobs)
        self.tree = tree

    def version(self, env: dict[str, str]) -> str:
        done = run([sys.executable, "-m", "orchestrator", "--version"], Path.cwd(), env, 60)
        return f"{done.output.strip()} ({self.tree})"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        lines = ["version: 1", "name: peers", "steps:"]
        for step in work.steps:
            lines += [
                f"  s{step.index}:",
                f"    inputs: [{', '.join(step.inputs)}]",
                f"    output: {step.output}",
                f"    run: {step.command}",
            ]
        (folder / "orch.yaml").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.exe, "-m", "orchestrator", "build", "-j", str(self.jobs)]

    def check(self, figure: str, work: Work, output: str) -> str | None:
        reran = len(work.reruns)
        expected = {
            "first": f"{work.n} ran",
            "rebuild": f"{reran} ran, {work.n - reran} up to date",
            "noop": f"all {work.n} steps up to date",
        }[figure]
        if expected in output:
            return None
        return f"expected {expected!r} in its output, got {output.strip()[-300:]!r}"


class Make(Tool):
    name = "make"
    label = "make -r"
    exe_name = "make"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        outputs = " ".join(step.output for step in work.steps)
        lines = [".PHONY: all", f"all: {outputs}"]
        for step in work.steps:
            lines += [f"{step.output}: {' '.join(step.inputs)}", f"\t{step.command}"]
        (folder / "Makefile").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.exe, "-r", f"-j{self.jobs}"]

    def check(self, figure: str, work: Work, output: str) -> str | None:
        if figure == "noop" and "Nothing to be done" not in output:
            return f"make did not say 'Nothing to be done': {output.strip()[-300:]!r}"
        return None


class Ninja(Tool):
    name = "ninja"
    label = "ninja"
    exe_name = "ninja"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        lines = ["rule sh", "  command = $cmd"]
        for step in work.steps:
            lines += [f"build {step.output}: sh {' '.join(step.inputs)}", f"  cmd = {step.command}"]
        (folder / "build.ninja").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.exe, f"-j{self.jobs}"]

    def check(self, figure: str, work: Work, output: str) -> str | None:
        if figure == "noop" and "no work to do" not in output:
            return f"ninja did not say 'no work to do': {output.strip()[-300:]!r}"
        return None


class Doit(Tool):
    name = "doit"
    label = "doit"
    exe_name = "doit"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        steps = [[list(step.inputs), step.output, step.command] for step in work.steps]
        (folder / "dodo.py").write_text(
            f"STEPS = {json.dumps(steps)}\n\n\n"
            "def task_s():\n"
            "    for i, (inputs, output, command) in enumerate(STEPS):\n"
            "        yield {'name': str(i), 'file_dep': inputs, 'targets': [output],"
            " 'actions': [command]}\n"
        )

    def command(self) -> list[str]:
        return [self.exe, "-n", str(self.jobs)]

    def check(self, figure: str, work: Work, output: str) -> str | None:
        ran = sum(line.startswith(".  ") for line in output.splitlines())
        if figure == "noop" and ran:
            return f"doit ran {ran} tasks in a no-op"
        return None


class Task(Tool):
    name = "task"
    label = "go-task"
    exe_name = "task"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        names = ", ".join(f"s{step.index}" for step in work.steps)
        lines = ["version: '3'", "run: once", "tasks:", "  default:", f"    deps: [{names}]"]
        for step in work.steps:
            lines.append(f"  s{step.index}:")
            if step.parents:
                lines.append(f"    deps: [{', '.join(f's{p}' for p in step.parents)}]")
            lines += [
                f"    sources: [{', '.join(step.inputs)}]",
                f"    generates: [{step.output}]",
                f"    cmds: [{json.dumps(step.command)}]",
            ]
        (folder / "Taskfile.yml").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.exe, "--concurrency", str(self.jobs)]

    def check(self, figure: str, work: Work, output: str) -> str | None:
        ran = sum(line.startswith("task: [s") for line in output.splitlines())
        if figure == "noop" and ran:
            return f"go-task ran {ran} tasks in a no-op"
        return None


class Snakemake(Tool):
    name = "snakemake"
    label = "snakemake"
    exe_name = "snakemake"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        outputs = ", ".join(json.dumps(step.output) for step in work.steps)
        lines = ["rule all:", f"    input: [{outputs}]"]
        for step in work.steps:
            lines += [
                f"rule s{step.index}:",
                f"    input: {', '.join(json.dumps(i) for i in step.inputs)}",
                f"    output: {json.dumps(step.output)}",
                f"    shell: {json.dumps(step.command)}",
            ]
        (folder / "Snakefile").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.exe, "-c", str(self.jobs)]

    def check(self, figure: str, work: Work, output: str) -> str | None:
        if figure == "noop" and "Nothing to be done" not in output:
            return f"snakemake did not say 'Nothing to be done': {output.strip()[-300:]!r}"
        return None


class Dvc(Tool):
    name = "dvc"
    label = "dvc repro (1 job)"
    exe_name = "dvc"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        init = run([self.exe, "init", "--no-scm", "-q"], folder, env, 120)
        if init.code != 0:
            raise BenchError(f"dvc init failed: {init.output.strip()[-500:]}")
        lines = ["stages:"]
        for step in work.steps:
            lines += [
                f"  s{step.index}:",
                f"    cmd: {json.dumps(step.command)}",
                f"    deps: [{', '.join(step.inputs)}]",
                f"    outs: [{step.output}]",
            ]
        (folder / "dvc.yaml").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.exe, "repro"]

    def check(self, figure: str, work: Work, output: str) -> str | None:
        if figure == "noop" and "up to date" not in output:
            return f"dvc did not say 'up to date': {output.strip()[-300:]!r}"
        return None


FLOOR_SCRIPT = """\
import hashlib, json, os, sys

with open("floor.json") as file:
    recorded = json.load(file)
stale = []
for path, digest in recorded.items():
    os.stat(path)
    with open(path, "rb") as file:
        if hashlib.sha256(file.read()).hexdigest() != digest:
            stale.append(path)
print(f"{len(recorded) - len(stale)} up to date, {len(stale)} stale")
sys.exit(1 if stale else 0)
"""


class Floor(Tool):
    """The least a no-op can do in Python: hash every input and compare with a record."""

    name = "floor"
    label = "Python floor"
    figures = ("noop",)

    def __init__(self, jobs: int) -> None:
        super().__init__(sys.executable, jobs)

    def version(self, env: dict[str, str]) -> str:
        return f"Python {sys.version.split()[0]}, sha256 of every input"

    def setup(self, work: Work, folder: Path, env: dict[str, str]) -> None:
        (folder / "floor.py").write_text(FLOOR_SCRIPT)

    def before_noop(self, work: Work, folder: Path) -> None:
        """Write the outputs a build would have written, and the record of every input."""
        for step, content in zip(work.steps, expected_outputs(work, folder), strict=True):
            (folder / step.output).write_bytes(content)
        inputs = dict.fromkeys(path for step in work.steps for path in step.inputs)
        recorded = {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in inputs}
        (folder / "floor.json").write_text(json.dumps(recorded))

    def command(self) -> list[str]:
        return [self.exe, "floor.py"]

    def check(self, figure: str, work: Work, output: str) -> str | None:
        if " 0 stale" not in output:
            return f"the floor found stale inputs: {output.strip()!r}"
        return None


PEER_CLASSES: dict[str, type[Tool]] = {
    "make": Make,
    "ninja": Ninja,
    "doit": Doit,
    "task": Task,
    "snakemake": Snakemake,
    "dvc": Dvc,
}


def find_peer(name: str, jobs: int) -> Tool | None:
    if name == "floor":
        return Floor(jobs)
    cls = PEER_CLASSES[name]
    exe = find_executable(cls.exe_name)
    return cls(exe, jobs) if exe else None


# --------------------------------------------------------------------------- measuring


@dataclass
class Series:
    """Samples of one figure of one tool on one work."""

    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "median_s": round(self.median, 4),
            "min_s": round(min(self.samples), 4),
            "max_s": round(max(self.samples), 4),
            "runs": len(self.samples),
            "samples_s": [round(s, 4) for s in self.samples],
            "cpu_median_s": round(self.cpu_median, 4),
        }

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


@dataclass
class Bench:
    tools: list[Tool]
    env: dict[str, str]
    runs: int
    budget_s: float
    timeout_s: float
    quiet: bool
    series: dict[tuple[str, str, str], Series] = field(default_factory=dict)
    spent: dict[tuple[str, str], float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def progress(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def problem(self, tool: Tool, work: Work, message: str) -> None:
        if tool.name == "orch":
            raise BenchError(f"orch, {work.name} {work.n}: {message}")
        self.problems.append(f"{tool.label}, {work.name} {work.n}: {message}")
        self.progress(f"  problem: {self.problems[-1]}")

    def timed(self, tool: Tool, work: Work, figure: str, folder: Path) -> Result | None:
        """Run the tool once, record its wall time; None (and a problem) if it failed."""
        done = run(tool.command(), folder, self.env, self.timeout_s)
        self.spent[(work.name, tool.name)] = self.spent.get((work.name, tool.name), 0.0) + (
            done.wall_s
        )
        if done.timed_out or done.code != 0:
            how = "timed out" if done.timed_out else f"exited with {done.code}"
            last = (done.output.strip().splitlines() or [""])[-1][-200:]
            self.problem(tool, work, f"{figure}: {how} (last line: {last!r})")
            return None
        series = self.series.setdefault((work.name, figure, tool.name), Series())
        series.samples.append(done.wall_s)
        series.cpu.append(done.cpu_s)
        wrong = tool.check(figure, work, done.output)
        if wrong:
            self.problem(tool, work, f"{figure}: {wrong}")
        return done

    def first(self, tool: Tool, work: Work, folder: Path) -> bool:
        if "first" not in tool.figures:
            return True
        if self.timed(tool, work, "first", folder) is None:
            return False
        wrong = wrong_outputs(work, folder)
        if wrong:
            self.problem(tool, work, f"first build: {wrong}")
        return wrong is None

    def rebuild(self, tool: Tool, work: Work, folder: Path, round_: int) -> bool:
        (folder / "src" / f"{work.edited}.txt").write_text(f"{work.edited} edit {round_}\n")
        if "rebuild" not in tool.figures:
            return True
        before = output_mtimes(work, folder)
        if self.timed(tool, work, "rebuild", folder) is None:
            return False
        after = output_mtimes(work, folder)
        rewritten = {i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a}
        if rewritten != work.reruns:
            self.problem(
                tool,
                work,
                f"rebuild rewrote {len(rewritten)} outputs, expected {len(work.reruns)}",
            )
        wrong = wrong_outputs(work, folder)
        if wrong:
            self.problem(tool, work, f"rebuild: {wrong}")
        return not wrong

    def noop(self, tool: Tool, work: Work, folder: Path) -> bool:
        tool.before_noop(work, folder)
        before = output_mtimes(work, folder)
        if self.timed(tool, work, "noop", folder) is None:
            return False
        rewritten = sum(b != a for b, a in zip(before, output_mtimes(work, folder), strict=True))
        if rewritten:
            self.problem(tool, work, f"no-op rewrote {rewritten} outputs")
        return True

    def within_budget(self, tool: Tool, work: Work) -> bool:
        """orch and the floor run every round; a peer, until it has used the budget."""
        if tool.name in ("orch", "floor"):
            return True
        return self.spent.get((work.name, tool.name), 0.0) < self.budget_s

    def warm_up(self) -> None:
        """One untimed round of every tool on 4 steps (bytecode, caches), then forget it."""
        self.progress("warm-up: every tool on 4 steps")
        for work in (copy_work(4), dag_work(4)):
            self.round(work, 0, list(self.tools))
        self.series.clear()
        self.spent.clear()
        self.problems.clear()

    def round(self, work: Work, round_: int, tools: list[Tool]) -> list[Tool]:
        """One round of the three figures, tools interleaved; the tools still fit to go on."""
        folders: dict[str, Path] = {}
        failed: set[str] = set()
        try:
            for tool in tools:
                folder = Path(tempfile.mkdtemp(prefix=f"peers-{tool.name}-"))
                folders[tool.name] = folder
                make_sources(work, folder)
                tool.setup(work, folder, self.env)
            steps: list[Callable[[Tool, Path], bool]] = [
                lambda t, f: self.first(t, work, f),
                lambda t, f: self.rebuild(t, work, f, round_),
                lambda t, f: self.noop(t, work, f),
            ]
            for step in steps:
                for tool in tools:
                    if tool.name not in failed and not step(tool, folders[tool.name]):
                        failed.add(tool.name)
        finally:
            for folder in folders.values():
                shutil.rmtree(folder, ignore_errors=True)
        return [t for t in tools if t.name not in failed and self.within_budget(t, work)]

    def measure(self, work: Work) -> None:
        tools = list(self.tools)
        for round_ in range(self.runs):
            if not tools:
                break
            self.progress(
                f"{work.name} {work.n}: round {round_ + 1}/{self.runs}"
                f" ({', '.join(t.name for t in tools)}), load {os.getloadavg()[0]:.2f}"
            )
            tools = self.round(work, round_, tools)

    def get(self, work: str, figure: str, tool: str) -> Series | None:
        series = self.series.get((work, figure, tool))
        return series if series and series.samples else None


# --------------------------------------------------------------------------- report


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio_text(orch: Series | None, peer: Series | None) -> str:
    if orch is None or peer is None:
        return ""
    return f"{orch.median / peer.median:.2f}x"


def print_tables(bench: Bench, works: list[Work]) -> None:
    for work in works:
        print(f"\n{work.name} {work.n}")
        for figure in FIGURES:
            print(f"  {FIGURE_TITLES[figure]}:")
            orch = bench.get(work.name, figure, "orch")
            for tool in bench.tools:
                series = bench.get(work.name, figure, tool.name)
                if figure not in tool.figures:
                    continue
                if series is None:
                    print(f"    {tool.label:<20} (no successful run)")
                    continue
                spread = f"{fmt_s(min(series.samples))}-{fmt_s(max(series.samples))}"
                ratio = ""
                if tool.name != "orch":
                    ratio = f"orch/{tool.name} {ratio_text(orch, series)}"
                print(
                    f"    {tool.label:<20} {fmt_s(series.median):>9}  ({spread},"
                    f" {len(series.samples)} runs, cpu {fmt_s(series.cpu_median)})  {ratio}"
                )


@dataclass
class Target:
    text: str
    orch: float | None
    limit: float | None

    @property
    def verdict(self) -> str:
        if self.orch is None or self.limit is None:
            return "not measured"
        return "PASS" if self.orch <= self.limit else "FAIL"


def targets(bench: Bench, n: int) -> list[Target]:
    """The issue's targets, judged on medians."""

    def median(work: str, figure: str, tool: str, times: float = 1.0) -> float | None:
        series = bench.get(work, figure, tool)
        return None if series is None else series.median * times

    found = []
    for work in ("copy", "DAG"):
        orch = median(work, "first", "orch")
        found.append(Target(f"first build {work} {n} <= doit", orch, median(work, "first", "doit")))
        found.append(
            Target(f"first build {work} {n} <= 2x make", orch, median(work, "first", "make", 2))
        )
    found.append(
        Target(
            f"rebuild DAG {n} <= doit",
            median("DAG", "rebuild", "orch"),
            median("DAG", "rebuild", "doit"),
        )
    )
    noop = median("copy", "noop", "orch")
    found.append(
        Target(
            f"rebuild copy {n} <= orch no-op + 100 ms (reference)",
            median("copy", "rebuild", "orch"),
            None if noop is None else noop + REBUILD_REFERENCE_S,
        )
    )
    for work in ("copy", "DAG"):
        found.append(
            Target(
                f"no-op {work} {n} <= 3x Python floor",
                median(work, "noop", "orch"),
                median(work, "noop", "floor", 3),
            )
        )
    return found


def print_targets(found: list[Target]) -> None:
    print("\ntargets (medians):")
    for target in found:
        figures = ""
        if target.orch is not None and target.limit is not None:
            figures = f"  (orch {fmt_s(target.orch)}, limit {fmt_s(target.limit)})"
        print(f"  {target.text}: {target.verdict}{figures}")


def as_json(
    bench: Bench, works: list[Work], found: list[Target], info: dict[str, Any]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for (work_name, figure_name, tool_name), series in bench.series.items():
        if series.samples:
            by_figure = figures.setdefault(work_name, {}).setdefault(figure_name, {})
            by_figure[tool_name] = series.as_json()
    ratios: dict[str, Any] = {}
    for work in works:
        for figure in FIGURES:
            orch = bench.get(work.name, figure, "orch")
            for tool in bench.tools[1:]:
                peer = bench.get(work.name, figure, tool.name)
                if orch and peer:
                    key = f"{work.name}/{figure}/orch_over_{tool.name}"
                    ratios[key] = round(orch.median / peer.median, 3)
    return {
        **info,
        "figures": figures,
        "ratios": ratios,
        "targets": [
            {"target": t.text, "verdict": t.verdict, "orch_s": t.orch, "limit_s": t.limit}
            for t in found
        ],
        "problems": bench.problems,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="steps per work (default 1000)")
    parser.add_argument("--runs", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel jobs of every tool")
    parser.add_argument(
        "--budget", type=float, default=180.0, help="seconds a tool may use on a work (180)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per command (600)")
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated (default {','.join(PEERS)})"
    )
    parser.add_argument("--orch-tree", type=Path, default=ROOT, help="the orch checkout to run")
    parser.add_argument("--quick", action="store_true", help="--n 200 --runs 3")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a problem or FAIL")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.runs = 200, 3
    unknown = set(filter(None, args.peers.split(","))) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))} (known: {', '.join(PEERS)})")
    if args.n < 4 or args.runs < 1:
        parser.error("--n must be at least 4 and --runs at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tree = args.orch_tree.resolve()
    env = bench_env(tree)
    tools: list[Tool] = [Orch(tree, args.jobs)]
    missing = []
    for name in filter(None, args.peers.split(",")):
        peer = find_peer(name, args.jobs)
        if peer is None:
            missing.append(name)
        else:
            tools.append(peer)
    bench = Bench(tools, env, args.runs, args.budget, args.timeout, quiet=False)
    versions = {tool.label: tool.version(env) for tool in tools}
    load_before = os.getloadavg()
    works = [copy_work(args.n), dag_work(args.n)]
    started = time.perf_counter()
    try:
        bench.warm_up()
        for work in works:
            bench.measure(work)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    load_after = os.getloadavg()
    found = targets(bench, args.n)
    info = {
        "n": args.n,
        "runs": args.runs,
        "jobs": args.jobs,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "versions": versions,
        "not_installed": missing,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(as_json(bench, works, found, info), indent=2))
    else:
        print(
            f"{args.n} steps, {args.runs} rounds, -j {args.jobs}, {info['cpus']} CPUs,"
            f" {info['date']}, load before {' '.join(map(str, info['load_before']))},"
            f" after {' '.join(map(str, info['load_after']))}, {info['elapsed_s']} s"
        )
        for label, version in versions.items():
            print(f"  {label}: {version}")
        for name in missing:
            print(f"  {name}: not installed")
        print_tables(bench, works)
        print_targets(found)
        print("\nproblems: " + ("none" if not bench.problems else ""))
        for problem in bench.problems:
            print(f"  {problem}")
    failed = bench.problems or any(t.verdict == "FAIL" for t in found)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())

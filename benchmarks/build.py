"""Benchmark `orch build` on generated pipelines (whole process, wall time and peak memory).

Usage:
    python benchmarks/build.py [--sizes 1000,10000] [--runs 7] [--budget 60] [--quick]
                               [--foreach] [--peers make,dvc,task] [--json] [--strict]

Measures, each in a fresh temporary folder:

1. Pipelines of N independent one-file shell steps (`inputs: [src/i.txt]`,
   `output: out/i.txt`, `run: cp src/i.txt out/i.txt`), written as N explicit
   steps (or, with `--foreach`, one step with `foreach` over a list of N items).
   The first `orch build` (default -j) is timed once and doubles as the warm-up;
   then the no-op `orch build` (everything up to date) is timed `--runs` times.
   Targets: no-op median <= 150 ms at N = 1,000 and <= 1.0 s at N = 10,000;
   peak RSS <= 250 MB at N = 10,000 for the no-op and the first build.
2. The first build of 200 trivial steps (`run: echo i > out/i.txt`), at `-j 1`
   and at the default -j, each run in a fresh folder, alternating with the
   baseline: `/bin/sh` running the same 200 commands one after another, each as
   `/bin/sh -ec COMMAND` (as orch runs them). Overhead per step =
   (orch wall time - baseline wall time of the same round) / 200.
   Target: <= 10 ms per step at -j 1.
3. Peers on the same work, when installed: GNU make (`make -r`, one explicit
   rule per step), DVC (`dvc repro` in a `dvc init --no-scm` folder) and go-task
   (`Taskfile.yml` with sources/generates). Ratios are orch median / peer median.

Wall time is `time.perf_counter` around the whole process; peak memory is the
child's `ru_maxrss` from `os.wait4` (it covers the child and the processes it
waited for; MB = 2**20 bytes). Times are judged on the median, memory on the max.
A series of repeated runs stops early once it has used `--budget` seconds
(after at least one run); the table gives the number of runs made.

Correctness checks, reported under "problems": every output has the expected
content after a first build; each no-op `orch build` prints `all N steps up to
date` and leaves the outputs' mtimes alone; each peer says it is up to date.

Standard library only. Exits 1 if orch fails to build or the benchmark cannot
run; a missed target or a problem is reported but exits 0 unless `--strict`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SIZES = (1_000, 10_000)
DEFAULT_RUNS = 7
DEFAULT_BUDGET_S = 60.0
DEFAULT_TIMEOUT_S = 1800.0
QUICK_SIZES = (1_000,)
QUICK_RUNS = 3
TRIVIAL_STEPS = 200
NOOP_TARGET_MS = {1_000: 150.0, 10_000: 1_000.0}
RSS_TARGET_MB = {10_000: 250.0}
OVERHEAD_TARGET_MS = 10.0
SHELL = "/bin/sh"
PEERS = ("make", "dvc", "task")
TERM_GRACE_S = 10.0
SECTION_NOOP = "No-op build, everything up to date (after one first build)"


class BenchError(Exception):
    """The benchmark cannot go on (orch failed, a folder could not be set up, ...)."""


# --------------------------------------------------------------------------- processes


@dataclass
class Result:
    """One finished process: wall time, peak memory, exit code and output."""

    cmd: list[str]
    wall_s: float
    maxrss_mb: float
    code: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def wall_ms(self) -> float:
        return self.wall_s * 1000.0

    def last_line(self) -> str:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""

    def describe(self) -> str:
        """`cmd` and how it ended, with the end of its output, for error messages."""
        how = "timed out" if self.timed_out else f"exited with {self.code}"
        tail = (self.stderr.strip() or self.stdout.strip())[-2000:]
        return f"{shlex.join(self.cmd)} {how}" + (f":\n{tail}" if tail else "")


class _Deadline:
    """Sends SIGTERM to a process after `timeout_s`, then SIGKILL after a grace period."""

    def __init__(self, pid: int, timeout_s: float) -> None:
        self.pid = pid
        self.lock = threading.Lock()
        self.finished = False
        self.expired = False
        self.timers = [threading.Timer(timeout_s, self._signal, (signal.SIGTERM,))]
        self.timers[0].daemon = True
        self.timers[0].start()

    def _signal(self, sig: signal.Signals) -> None:
        with self.lock:
            if self.finished:
                return
            self.expired = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            if sig == signal.SIGTERM:
                kill = threading.Timer(TERM_GRACE_S, self._signal, (signal.SIGKILL,))
                kill.daemon = True
                self.timers.append(kill)
                kill.start()

    def finish(self) -> None:
        with self.lock:
            self.finished = True
            for timer in self.timers:
                timer.cancel()


def run(cmd: Sequence[str], cwd: Path, timeout_s: float) -> Result:
    """Run `cmd` in `cwd` to its end; measure its wall time and peak RSS."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        except OSError as exc:
            raise BenchError(f"cannot start {shlex.join(cmd)}: {exc}") from exc
        deadline = _Deadline(proc.pid, timeout_s)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            deadline.finish()
        wall_s = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Result(
            cmd=list(cmd),
            wall_s=wall_s,
            maxrss_mb=usage.ru_maxrss / 1024.0,  # Linux: kilobytes
            code=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=deadline.expired,
        )


def orch_executable() -> list[str]:
    """The real console script next to this interpreter (not a pyenv shim from PATH)."""
    script = Path(sys.executable).parent / "orch"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "orchestrator"]


# --------------------------------------------------------------------------- generated work


def copy_steps(n: int) -> list[tuple[str, str]]:
    """(output, command) of the N copy steps; input i is `src/i.txt`."""
    return [(f"out/{i}.txt", f"cp src/{i}.txt out/{i}.txt") for i in range(n)]


def trivial_steps(n: int) -> list[tuple[str, str]]:
    """(output, command) of the N trivial steps, which read nothing."""
    return [(f"out/{i}.txt", f"echo {i} > out/{i}.txt") for i in range(n)]


def make_sources(folder: Path, n: int) -> None:
    """`src/0.txt` .. `src/{n-1}.txt` (content `i\\n`) and an empty `out/`.

    orch, like make, does not create an output's parent folder, so `out/` is made here.
    """
    (folder / "src").mkdir(parents=True)
    (folder / "out").mkdir()
    for i in range(n):
        (folder / "src" / f"{i}.txt").write_text(f"{i}\n")


def write_orch(folder: Path, n: int, copy: bool, foreach: bool) -> None:
    """`orch.yaml`: N explicit steps, or one `foreach` step over a list of N items."""
    lines = ["version: 1", "name: bench", "steps:"]
    if foreach:
        ids = ", ".join(str(i) for i in range(n))
        lines += ["  s:", f"    foreach: [{ids}]"]
        if copy:
            lines += [
                '    inputs: ["src/{{ item }}.txt"]',
                '    output: "out/{{ item }}.txt"',
                '    run: "cp src/{{ item }}.txt out/{{ item }}.txt"',
            ]
        else:
            lines += [
                '    output: "out/{{ item }}.txt"',
                '    run: "echo {{ item }} > out/{{ item }}.txt"',
            ]
    else:
        steps = copy_steps(n) if copy else trivial_steps(n)
        for i, (output, command) in enumerate(steps):
            lines.append(f"  s{i}:")
            if copy:
                lines.append(f"    inputs: [src/{i}.txt]")
            lines += [f"    output: {output}", f"    run: {command}"]
    (folder / "orch.yaml").write_text("\n".join(lines) + "\n")


def write_baseline(folder: Path, n: int) -> None:
    """`baseline.sh`: the trivial commands, each in its own `/bin/sh -ec`, one after another."""
    lines = [f"{SHELL} -ec {shlex.quote(command)}" for _, command in trivial_steps(n)]
    (folder / "baseline.sh").write_text("\n".join(lines) + "\n")


def check_outputs(folder: Path, n: int) -> str | None:
    """None if every `out/i.txt` holds `i\\n`, else what is wrong."""
    wrong = []
    for i in range(n):
        path = folder / "out" / f"{i}.txt"
        try:
            ok = path.read_text() == f"{i}\n"
        except OSError:
            ok = False
        if not ok:
            wrong.append(f"out/{i}.txt")
    if not wrong:
        return None
    return f"{len(wrong)} of {n} outputs missing or wrong (first: {wrong[0]})"


def output_mtimes(folder: Path, n: int) -> dict[int, int]:
    return {i: (folder / "out" / f"{i}.txt").stat().st_mtime_ns for i in range(n)}


# --------------------------------------------------------------------------- peers


class Peer:
    """A tool doing the same generated work; subclasses write its files and commands."""

    name = ""
    label = ""
    parallel = True

    def __init__(self, exe: str, timeout_s: float) -> None:
        self.exe = exe
        self.timeout_s = timeout_s

    def version(self) -> str:
        try:
            proc = subprocess.run(
                [self.exe, "--version"], capture_output=True, check=False, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        lines = proc.stdout.decode(errors="replace").strip().splitlines()
        return lines[0].strip() if lines else "?"

    def setup(self, folder: Path, steps: list[tuple[str, str]], copy: bool) -> None:
        raise NotImplementedError

    def build_cmd(self, jobs: int) -> list[str] | None:
        """The first-build command at `jobs` jobs (None: the peer has no such setting)."""
        raise NotImplementedError

    def noop_cmd(self) -> list[str]:
        raise NotImplementedError

    def uptodate_cmd(self, n: int) -> list[str]:
        """A command that exits 0 only if everything is up to date."""
        raise NotImplementedError


class Make(Peer):
    name = "make"
    label = "make -r"

    def setup(self, folder: Path, steps: list[tuple[str, str]], copy: bool) -> None:
        outputs = " ".join(output for output, _ in steps)
        lines = [".PHONY: all", f"all: {outputs}"]
        for i, (output, command) in enumerate(steps):
            lines += [f"{output}:" + (f" src/{i}.txt" if copy else ""), f"\t{command}"]
        (folder / "Makefile").write_text("\n".join(lines) + "\n")

    def build_cmd(self, jobs: int) -> list[str]:
        return [self.exe, "-r", f"-j{jobs}"]

    def noop_cmd(self) -> list[str]:
        return [self.exe, "-r"]

    def uptodate_cmd(self, n: int) -> list[str]:
        return [self.exe, "-r", "-q"]


class Dvc(Peer):
    name = "dvc"
    label = "dvc repro"
    parallel = False

    def setup(self, folder: Path, steps: list[tuple[str, str]], copy: bool) -> None:
        init = run([self.exe, "init", "--no-scm", "-q"], folder, self.timeout_s)
        if init.code != 0:
            raise BenchError(init.describe())
        lines = ["stages:"]
        for i, (output, command) in enumerate(steps):
            lines += [f"  s{i}:", f"    cmd: {command}"]
            if copy:
                lines.append(f"    deps: [src/{i}.txt]")
            lines.append(f"    outs: [{output}]")
        (folder / "dvc.yaml").write_text("\n".join(lines) + "\n")

    def build_cmd(self, jobs: int) -> list[str] | None:
        return [self.exe, "repro"] if jobs == 1 else None

    def noop_cmd(self) -> list[str]:
        return [self.exe, "repro"]

    def uptodate_cmd(self, n: int) -> list[str]:
        return [self.exe, "status", "-q"]


class Task(Peer):
    name = "task"
    label = "go-task"

    def setup(self, folder: Path, steps: list[tuple[str, str]], copy: bool) -> None:
        names = ", ".join(f"s{i}" for i in range(len(steps)))
        lines = ["version: '3'", "tasks:", "  default:", f"    deps: [{names}]"]
        for i, (output, command) in enumerate(steps):
            lines.append(f"  s{i}:")
            if copy:
                lines.append(f"    sources: [src/{i}.txt]")
            lines += [f"    generates: [{output}]", f"    cmds: [{json.dumps(command)}]"]
        (folder / "Taskfile.yml").write_text("\n".join(lines) + "\n")

    def build_cmd(self, jobs: int) -> list[str]:
        return [self.exe, "--concurrency", str(jobs)]

    def noop_cmd(self) -> list[str]:
        return [self.exe]

    def uptodate_cmd(self, n: int) -> list[str]:
        return [self.exe, "--status", *(f"s{i}" for i in range(n))]


PEER_CLASSES: dict[str, tuple[type[Peer], tuple[str, ...]]] = {
    "make": (Make, ("make",)),
    "dvc": (Dvc, ("dvc",)),
    "task": (Task, ("task", "go-task")),
}


def find_peer(name: str, timeout_s: float) -> Peer | None:
    cls, executables = PEER_CLASSES[name]
    for exe in executables:
        path = shutil.which(exe)
        if path:
            return cls(path, timeout_s)
    return None


# --------------------------------------------------------------------------- figures


@dataclass
class Figure:
    """One measured quantity: its samples and, if it has one, its target."""

    key: str
    section: str
    label: str
    unit: str
    samples: list[float]
    target: float | None = None
    judged_on: str = "median"

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def judged_value(self) -> float:
        return max(self.samples) if self.judged_on == "max" else self.median

    @property
    def result(self) -> str | None:
        if self.target is None:
            return None
        return "PASS" if self.judged_value <= self.target else "FAIL"

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "section": self.section,
            "label": self.label,
            "unit": self.unit,
            "median": round(self.median, 3),
            "min": round(min(self.samples), 3),
            "max": round(max(self.samples), 3),
            "runs": len(self.samples),
            "samples": [round(s, 3) for s in self.samples],
            "target": self.target,
            "judged_on": self.judged_on if self.target is not None else None,
            "result": self.result,
        }


@dataclass
class Ratio:
    section: str
    label: str
    orch: str
    peer: str
    value: float | None  # None: the peer is not installed or did not run
    note: str = ""


@dataclass
class Bench:
    """Runs the measurements and collects figures, ratios and problems."""

    root: Path
    orch: list[str]
    runs: int
    budget_s: float
    timeout_s: float
    foreach: bool
    peers: dict[str, Peer | None]
    cpus: int
    started: float = field(default_factory=time.perf_counter)
    figures: list[Figure] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    # -------------------------------------------------------------- helpers

    def progress(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f} s] {message}", file=sys.stderr)

    def figure(
        self,
        key: str,
        section: str,
        label: str,
        unit: str,
        samples: list[float],
        target: float | None = None,
        judged_on: str = "median",
    ) -> Figure:
        fig = Figure(key, section, label, unit, samples, target, judged_on)
        self.figures.append(fig)
        return fig

    def ratio(self, section: str, label: str, orch: Figure, peer: Figure | None) -> None:
        if peer is None:
            self.ratios.append(Ratio(section, label, orch.key, "", None, "did not run"))
        elif peer.median <= 0:
            self.ratios.append(Ratio(section, label, orch.key, peer.key, None, "peer took 0"))
        else:
            self.ratios.append(Ratio(section, label, orch.key, peer.key, orch.median / peer.median))

    def rounds(self) -> Iterator[int]:
        """Round numbers of a series: `runs` of them, fewer once `budget_s` is used up."""
        start = time.perf_counter()
        for index in range(self.runs):
            if index and time.perf_counter() - start >= self.budget_s:
                return
            yield index

    def orch_cmd(self, *args: str) -> list[str]:
        return [*self.orch, *args]

    def run_orch(self, args: Sequence[str], folder: Path) -> Result:
        result = run(self.orch_cmd(*args), folder, self.timeout_s)
        if result.code != 0 or result.timed_out:
            raise BenchError(f"{result.describe()}\n(folder: {folder})")
        return result

    def run_peer(self, cmd: Sequence[str], folder: Path) -> Result:
        result = run(cmd, folder, self.timeout_s)
        if result.code != 0 or result.timed_out:
            raise BenchError(result.describe())
        return result

    # -------------------------------------------------------------- 1. N copy steps

    def large(self, n: int) -> None:
        tag = f"N={n:,}"
        section_first = f"First build of N copy steps (default -j: {self.cpus})"
        section_noop = SECTION_NOOP
        folder = self.root / f"copy-{n}-orch"
        make_sources(folder, n)
        write_orch(folder, n, copy=True, foreach=self.foreach)

        self.progress(f"orch: first build, {tag}")
        first = self.run_orch(["build"], folder)
        if not first.last_line().startswith("succeeded"):
            self.problems.append(f"orch first build {tag}: last line {first.last_line()!r}")
        if wrong := check_outputs(folder, n):
            self.problems.append(f"orch first build {tag}: {wrong}")
        rss_target = RSS_TARGET_MB.get(n)
        orch_first = self.figure(
            f"first.orch.wall_s.n{n}", section_first, f"orch build, {tag} (s)", "s", [first.wall_s]
        )
        self.figure(
            f"first.orch.rss_mb.n{n}",
            section_first,
            f"orch build peak RSS, {tag} (MB)",
            "MB",
            [first.maxrss_mb],
            rss_target,
            "max",
        )
        mtimes = output_mtimes(folder, n)

        self.progress(f"orch: no-op builds, {tag}")
        walls: list[float] = []
        rss: list[float] = []
        expected = f"all {n} step{'s' if n != 1 else ''} up to date"
        for index in self.rounds():
            result = self.run_orch(["build"], folder)
            walls.append(result.wall_ms)
            rss.append(result.maxrss_mb)
            if result.last_line() != expected:
                self.problems.append(
                    f"orch no-op build {tag}, run {index + 1}: expected {expected!r}, "
                    f"got {result.last_line()!r}"
                )
        if output_mtimes(folder, n) != mtimes:
            self.problems.append(f"orch no-op builds {tag} rewrote some outputs (mtime changed)")
        orch_noop = self.figure(
            f"noop.orch.wall_ms.n{n}",
            section_noop,
            f"orch build, {tag} (ms)",
            "ms",
            walls,
            NOOP_TARGET_MS.get(n),
        )
        self.figure(
            f"noop.orch.rss_mb.n{n}",
            section_noop,
            f"orch build peak RSS, {tag} (MB)",
            "MB",
            rss,
            rss_target,
            "max",
        )

        for name, peer in self.peers.items():
            if peer is None:
                self.ratios.append(Ratio(section_noop, f"{tag}: orch/{name}", "", "", None))
                self.ratios.append(Ratio(section_first, f"{tag}: orch/{name}", "", "", None))
                continue
            try:
                peer_first, peer_noop = self.large_peer(peer, n, section_first, section_noop)
            except BenchError as exc:
                self.problems.append(f"{peer.label} {tag}: {exc}")
                peer_first = peer_noop = None
            self.ratio(section_noop, f"{tag}: orch/{peer.label}", orch_noop, peer_noop)
            self.ratio(section_first, f"{tag}: orch/{peer.label}", orch_first, peer_first)

    def large_peer(
        self, peer: Peer, n: int, section_first: str, section_noop: str
    ) -> tuple[Figure | None, Figure]:
        tag = f"N={n:,}"
        folder = self.root / f"copy-{n}-{peer.name}"
        make_sources(folder, n)
        peer.setup(folder, copy_steps(n), copy=True)
        cmd = peer.build_cmd(self.cpus) or peer.build_cmd(1)
        assert cmd is not None
        self.progress(f"{peer.label}: first build, {tag}")
        first = self.run_peer(cmd, folder)
        if wrong := check_outputs(folder, n):
            self.problems.append(f"{peer.label} first build {tag}: {wrong}")
        first_fig = self.figure(
            f"first.{peer.name}.wall_s.n{n}",
            section_first,
            f"{shlex.join([peer.name, *cmd[1:]])}, {tag} (s)",
            "s",
            [first.wall_s],
        )
        self.progress(f"{peer.label}: no-op builds, {tag}")
        walls = [self.run_peer(peer.noop_cmd(), folder).wall_ms for _ in self.rounds()]
        check = run(peer.uptodate_cmd(n), folder, self.timeout_s)
        if check.code != 0:
            self.problems.append(f"{peer.label} {tag}: not up to date after no-op runs")
        noop_fig = self.figure(
            f"noop.{peer.name}.wall_ms.n{n}",
            section_noop,
            f"{peer.label}, {tag} (ms)",
            "ms",
            walls,
        )
        return first_fig, noop_fig

    # -------------------------------------------------------------- 2. trivial first build

    def trivial(self, n: int = TRIVIAL_STEPS) -> None:
        section = f"First build of {n} trivial steps (fresh folder each run)"
        variants: list[tuple[str, str, Callable[[Path], list[str] | None]]] = []

        def baseline(folder: Path) -> list[str]:
            write_baseline(folder, n)
            return [SHELL, "baseline.sh"]

        def orch_with(*args: str) -> Callable[[Path], list[str]]:
            def setup(folder: Path) -> list[str]:
                write_orch(folder, n, copy=False, foreach=self.foreach)
                return self.orch_cmd("build", *args)

            return setup

        def peer_with(peer: Peer, jobs: int) -> Callable[[Path], list[str] | None]:
            def setup(folder: Path) -> list[str] | None:
                peer.setup(folder, trivial_steps(n), copy=False)
                return peer.build_cmd(jobs)

            return setup

        variants.append(("sh", f"baseline: {n} x {SHELL} -ec, one after another", baseline))
        variants.append(("orch.j1", "orch build -j 1", orch_with("-j", "1")))
        variants.append(("orch.jdefault", f"orch build (default -j: {self.cpus})", orch_with()))
        job_counts = sorted({1, self.cpus})
        for peer in self.peers.values():
            if peer is None:
                continue
            for jobs in job_counts if peer.parallel else [1]:
                probe = peer.build_cmd(jobs)
                assert probe is not None
                label = shlex.join([peer.name, *probe[1:]])
                variants.append((f"{peer.name}.j{jobs}", label, peer_with(peer, jobs)))

        self.progress(f"first builds of {n} trivial steps: {', '.join(v[0] for v in variants)}")
        walls: dict[str, list[float]] = {key: [] for key, _, _ in variants}
        overheads: dict[str, list[float]] = {key: [] for key, _, _ in variants if key != "sh"}
        failed: set[str] = set()
        for index in self.rounds():
            sh_ms: float | None = None
            for key, label, setup in variants:
                if key in failed:
                    continue
                folder = self.root / f"trivial-{key}-{index}"
                folder.mkdir()
                (folder / "out").mkdir()
                is_peer = not (key == "sh" or key.startswith("orch."))
                try:
                    cmd = setup(folder)
                    assert cmd is not None
                    result = run(cmd, folder, self.timeout_s)
                    if result.code != 0 or result.timed_out:
                        raise BenchError(result.describe())
                except BenchError as exc:
                    if not is_peer:
                        raise
                    self.problems.append(f"{label}, {n} trivial steps: {exc}")
                    failed.add(key)
                    continue
                if wrong := check_outputs(folder, n):
                    self.problems.append(
                        f"{label}, {n} trivial steps, run {index + 1}: {wrong} (folder: {folder})"
                    )
                else:
                    shutil.rmtree(folder, ignore_errors=True)
                walls[key].append(result.wall_ms)
                if key == "sh":
                    sh_ms = result.wall_ms
                elif sh_ms is not None:
                    overheads[key].append((result.wall_ms - sh_ms) / n)

        figs: dict[str, Figure] = {}
        for key, label, _ in variants:
            if walls[key]:
                figs[key] = self.figure(
                    f"trivial.{key}.wall_ms", section, f"{label} (ms)", "ms", walls[key]
                )
        for key, label, _ in variants:
            if key != "sh" and overheads[key]:
                target = OVERHEAD_TARGET_MS if key == "orch.j1" else None
                self.figure(
                    f"trivial.{key}.overhead_ms_per_step",
                    section,
                    f"overhead per step, {label} (ms/step)",
                    "ms/step",
                    overheads[key],
                    target,
                )
        for name, peer in self.peers.items():
            if peer is None:
                self.ratios.append(Ratio(section, f"{n} steps: orch/{name}", "", "", None))
                continue
            for jobs in job_counts if peer.parallel else [1]:
                orch_key = "orch.j1" if jobs == 1 else "orch.jdefault"
                self.ratio(
                    section,
                    f"{n} steps, -j {jobs}: orch/{peer.label}",
                    figs[orch_key],
                    figs.get(f"{peer.name}.j{jobs}"),
                )


# --------------------------------------------------------------------------- output


def fmt(value: float, unit: str) -> str:
    if unit in ("s", "ms/step"):
        return f"{value:.2f}"
    return f"{value:.1f}"


def target_text(fig: Figure) -> str:
    if fig.target is None:
        return ""
    suffix = " (max)" if fig.judged_on == "max" else ""
    return f"<= {fmt(fig.target, fig.unit)}{suffix}"


def print_table(bench: Bench, header: list[str]) -> None:
    for line in header:
        print(line)
    sections: list[str] = []
    for section in [f.section for f in bench.figures] + [r.section for r in bench.ratios]:
        if section not in sections:
            sections.append(section)
    sections.sort(key=lambda section: section != SECTION_NOOP)  # the no-op targets first
    width = max([len(f.label) for f in bench.figures] + [40])
    columns = (
        f"{'figure':<{width}} {'median':>9} {'min':>9} {'max':>9} {'runs':>4}"
        f"  {'target':<13} result"
    )
    for section in sections:
        print()
        print(section)
        print("-" * len(columns))
        figures = [f for f in bench.figures if f.section == section]
        if figures:
            print(columns)
        for fig in figures:
            print(
                f"{fig.label:<{width}} {fmt(fig.median, fig.unit):>9}"
                f" {fmt(min(fig.samples), fig.unit):>9} {fmt(max(fig.samples), fig.unit):>9}"
                f" {len(fig.samples):>4}  {target_text(fig):<13} {fig.result or ''}".rstrip()
            )
        for ratio in (r for r in bench.ratios if r.section == section):
            if ratio.value is not None:
                text = f"{ratio.value:.1f}x"
            elif not ratio.peer and not ratio.note:
                text = "not installed"
            else:
                text = ratio.note
            print(f"ratio {ratio.label}: {text}")
    print()
    judged = [f for f in bench.figures if f.result]
    passed = sum(1 for f in judged if f.result == "PASS")
    print(f"targets: {passed} PASS, {len(judged) - passed} FAIL")
    for fig in judged:
        print(f"  {fig.result}  {fig.label}: {fmt(fig.judged_value, fig.unit)} {target_text(fig)}")
    if bench.problems:
        print("problems:")
        for problem in bench.problems:
            print(f"  - {problem}")
    else:
        print("problems: none")


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def parse_peers(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer {unknown[0]!r}; choose from {PEERS}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark `orch build` on generated pipelines against its targets and peers."
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=None,
        help="step counts of the copy pipelines, comma-separated (default 1000,10000)",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help=f"measured runs per series (default {DEFAULT_RUNS})"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds after which a series stops early (default {DEFAULT_BUDGET_S:g})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds before one command is stopped (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=1000 only and 3 runs per series"
    )
    parser.add_argument(
        "--foreach", action="store_true", help="one foreach step over N items, not N steps"
    )
    parser.add_argument(
        "--peers",
        type=parse_peers,
        default=list(PEERS),
        help="peers to compare with, comma-separated (default make,dvc,task; '' for none)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if a target is missed or a problem is found"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    sizes: list[int] = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    runs: int = args.runs if args.runs is not None else QUICK_RUNS if args.quick else DEFAULT_RUNS
    if runs < 1:
        parser.error("--runs must be at least 1")
    if args.budget <= 0 or args.timeout <= 0:
        parser.error("--budget and --timeout must be positive")

    cpus = os.cpu_count() or 1
    orch = orch_executable()
    peers = {name: find_peer(name, args.timeout) for name in args.peers}
    versions = {
        name: f"{peer.version()} ({peer.exe})" if peer else "not installed"
        for name, peer in peers.items()
    }
    root = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    bench = Bench(root, orch, runs, args.budget, args.timeout, args.foreach, peers, cpus)
    try:
        for n in sizes:
            bench.large(n)
        bench.trivial()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    total_s = time.perf_counter() - bench.started

    shape = "one foreach step over N items" if args.foreach else "N explicit steps"
    if args.json:
        report = {
            "python": sys.executable,
            "python_version": sys.version.split()[0],
            "orch": orch,
            "cpus": cpus,
            "peers": versions,
            "settings": {
                "sizes": sizes,
                "runs": runs,
                "budget_s": args.budget,
                "foreach": args.foreach,
                "trivial_steps": TRIVIAL_STEPS,
            },
            "figures": [fig.as_json() for fig in bench.figures],
            "ratios": [
                {
                    "section": r.section,
                    "label": r.label,
                    "orch": r.orch,
                    "peer": r.peer,
                    "ratio": r.value,
                    "note": r.note or ("not installed" if r.value is None and not r.peer else ""),
                }
                for r in bench.ratios
            ],
            "problems": bench.problems,
            "passed": all(f.result != "FAIL" for f in bench.figures),
            "total_s": round(total_s, 1),
        }
        print(json.dumps(report, indent=2))
    else:
        header = [
            f"python:  {sys.executable} ({sys.version.split()[0]})",
            f"orch:    {' '.join(orch)}",
            f"cpus:    {cpus}",
            f"pipelines: {shape}; runs per series: {runs} (budget {args.budget:g} s)",
            *(f"peer {name}: {text}" for name, text in versions.items()),
        ]
        print_table(bench, header)
        print(f"total time: {total_s:.0f} s")

    missed = any(f.result == "FAIL" for f in bench.figures)
    if args.strict and (missed or bench.problems):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

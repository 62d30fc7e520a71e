"""Benchmark orch at scale: load time, time to the first step, and no-op builds of N steps.

Usage:
    python benchmarks/scale.py [--sizes 1000,10000] [--runs 5] [--first-runs 3]
                               [--skip-load] [--skip-first-step] [--skip-noop]
                               [--before TREE] [--scratch DIR] [--strict] [--json]

Generates N one-file copy steps (`inputs: [src/i.txt]`, `output: out/i.txt`,
`run: mkdir -p out && cp src/i.txt out/i.txt`, as `rebuild.py` does) for each size N, and
measures, each timing the wall clock of a whole `python -m orchestrator` process:

1. load time: `orch validate` in the generated folder (a full parse, validation and
   expansion; `validate` never reads nor writes a saved plan), `--runs` times per size,
   interleaved across sizes; then the growth exponent between consecutive sizes,
   log10(t_big / t_small) / log10(N_big / N_small) (1 is linear). Target: <= 1.05.
2. time to the first step, at the largest size: in a fresh copy of the folder (no `.orch`),
   `orch build` starts at a wall time t0 (`time.time()`); `.orch/runs/*/events.jsonl` is
   polled every 5 ms until it holds a `step.started` event; the figure is that event's `ts`
   minus t0 (and, for information, the `ts` of `job.started` minus t0: how much of the wait
   comes before the build's run starts). The build is then sent SIGINT and must exit within
   60 s (else it is killed and reported). `--first-runs` times. Target: <= 2 s.
3. no-op build at each size: one full first build (timed once, for information), then
   `--runs` rounds of two no-op builds, in alternating order (an even `--runs` runs each
   first equally often): "plain", with the environment of the build before, and "unread
   variable changed", with `ORCH_BENCH_UNREAD` set to a new random value (no template reads
   it, so the saved plan still holds). Each must print
   `all N steps up to date`. Peak RSS from `os.wait4`'s `ru_maxrss`. Targets: unread/plain
   <= 1.10 at every size; at N >= 100,000, the no-op <= 10 s and its peak RSS <= 1 GB.

With `--before TREE` (another orch checkout, such as a git worktree), that orch is measured
too, in folders of its own (a saved plan belongs to one orch), right after this one in each
round. A 10,000-step first build takes a minute or two; 100,000 steps (`--sizes 100000`)
about ten minutes, so only when asked (`--skip-load --skip-first-step` to time the no-op only).

Prints a table (figure, orch, N, median, runs, target, PASS/MISS) and the machine's load from
/proc/loadavg before and after, or with `--json` the same figures as JSON. Exits 1 if a check
fails (a build fails, a no-op does not say everything is up to date, a build does not stop on
SIGINT), and with `--strict` also if a target is missed. Work folders go in a temporary folder
under `--scratch` (default: a new temporary folder), removed at the end. Standard library only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rebuild import orch_env, write_pipeline

ROOT = Path(__file__).resolve().parent.parent
UNREAD = "ORCH_BENCH_UNREAD"
POLL_S = 0.005
SIGINT_GRACE_S = 60.0
FIRST_STEP_TIMEOUT_S = 1800.0
BIG = 100_000
"""The size from which the no-op's own targets (seconds, peak RSS) apply."""


class Target(NamedTuple):
    """An upper bound on a figure."""

    limit: float
    text: str


EXPONENT = Target(1.05, "<= 1.05")
FIRST_STEP = Target(2.0, "<= 2 s")
UNREAD_RATIO = Target(1.10, "<= 1.10")
NOOP_BIG = Target(10.0, "<= 10 s")
RSS_BIG = Target(1024.0, "<= 1024 MB")


class Run(NamedTuple):
    """One finished orch process: wall seconds, peak RSS in MB, exit code and output."""

    wall: float
    rss_mb: float
    code: int
    output: str


@dataclass
class Figure:
    """One line of the table: a median over runs, with its target if it has one."""

    figure: str
    tree: str
    n: str
    unit: str
    values: list[float]
    target: str = ""
    verdict: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass
class Report:
    """Every figure measured, and the checks that failed."""

    figures: list[Figure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, figure: Figure, target: Target | None = None) -> None:
        if target is not None:
            figure.target = target.text
            figure.verdict = "PASS" if figure.median <= target.limit else "MISS"
        self.figures.append(figure)


def orch(tree: Path, folder: Path, command: str, env: dict[str, str] | None = None) -> Run:
    """Run `python -m orchestrator COMMAND` from `tree` in `folder` to its end."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", command],
            cwd=folder,
            env=env if env is not None else orch_env(tree),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return Run(wall, usage.ru_maxrss / 1024.0, process.returncode, text)  # Linux: kilobytes


def fresh(template: Path, folder: Path) -> Path:
    """A fresh copy of a generated folder: sources and pipeline, nothing built."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(template, folder, ignore=shutil.ignore_patterns(".orch"))
    return folder


def steps(n: int) -> str:
    return f"{n} step{'s' if n != 1 else ''}"


# 1. Load time.


def measure_load(
    trees: dict[str, Path], templates: dict[int, Path], runs: int, report: Report
) -> None:
    times: dict[tuple[str, int], list[float]] = {(t, n): [] for t in trees for n in templates}
    for _ in range(runs):
        for n, template in templates.items():
            for name, tree in trees.items():
                run = orch(tree, template, "validate")
                if run.code != 0 or f"ok ({steps(n)})" not in run.output:
                    report.problems.append(f"{name} validate of {n}: {run.output[-500:]!r}")
                times[name, n].append(run.wall)
    sizes = sorted(templates)
    for name in trees:
        for n in sizes:
            report.add(Figure("load (orch validate)", name, str(n), "s", times[name, n]))
        for small, big in itertools.pairwise(sizes):
            exponent = math.log10(
                statistics.median(times[name, big]) / statistics.median(times[name, small])
            ) / math.log10(big / small)
            report.add(
                Figure("load growth exponent", name, f"{small}-{big}", "", [exponent]), EXPONENT
            )


# 2. Time to the first step.


@dataclass
class EventWatch:
    """The times of a build's `job.started` and first `step.started` events, read as its
    `events.jsonl` grows."""

    folder: Path
    events: Path | None = None
    offset: int = 0
    job_started: float | None = None
    step_started: float | None = None

    def read(self) -> None:
        """Read the complete lines written since the last read."""
        if self.events is None:
            runs = (self.folder / ".orch" / "runs").glob("*/events.jsonl")
            self.events = next(iter(runs), None)
            if self.events is None:
                return
        with self.events.open("rb") as file:
            file.seek(self.offset)
            chunk = file.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            event = json.loads(line)
            if event["type"] == "job.started" and self.job_started is None:
                self.job_started = parse_ts(event["ts"])
            if event["type"] == "step.started" and self.step_started is None:
                self.step_started = parse_ts(event["ts"])


def parse_ts(ts: str) -> float:
    """Seconds since the epoch of an event's ISO-8601 UTC time, such as
    `2026-11-30T23:41:54.106Z`."""
    moment = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return moment.timestamp()


def wait_first_step(watch: EventWatch, process: subprocess.Popen[bytes]) -> None:
    """Poll until the build's first `step.started` event, the build's end, or the timeout."""
    deadline = time.monotonic() + FIRST_STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        watch.read()
        if watch.step_started is not None or process.poll() is not None:
            return
        time.sleep(POLL_S)


def stop(process: subprocess.Popen[bytes]) -> bool:
    """Send SIGINT; True if the build exits within the grace time, else kill it."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=SIGINT_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


class FirstStep(NamedTuple):
    """Seconds from the start of `orch build` to its `job.started` and first `step.started`
    events (None if not seen), and what went wrong."""

    job: float | None
    step: float | None
    problem: str


def time_to_first_step(tree: Path, folder: Path) -> FirstStep:
    """Start `orch build` in `folder`, wait for its first step, then interrupt it."""
    watch = EventWatch(folder)
    with tempfile.TemporaryFile() as out:
        t0 = time.time()
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "build"],
            cwd=folder,
            env=orch_env(tree),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_first_step(watch, process)
        exited = process.returncode is not None or stop(process)
        out.seek(0)
        text = out.read().decode(errors="replace")[-500:]
    job = None if watch.job_started is None else watch.job_started - t0
    step = None if watch.step_started is None else watch.step_started - t0
    if step is None:
        return FirstStep(job, step, f"no step.started event before the build ended: {text!r}")
    if not exited:
        return FirstStep(job, step, f"no exit within {SIGINT_GRACE_S:.0f} s of SIGINT")
    return FirstStep(job, step, "")


def measure_first_step(
    trees: dict[str, Path], template: Path, n: int, runs: int, scratch: Path, report: Report
) -> None:
    jobs: dict[str, list[float]] = {name: [] for name in trees}
    starts: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(runs):
        for index, (name, tree) in enumerate(trees.items()):
            folder = fresh(template, scratch / f"first-{index}")
            first = time_to_first_step(tree, folder)
            if first.problem:
                report.problems.append(f"{name} first step at {n}: {first.problem}")
            if first.job is not None:
                jobs[name].append(first.job)
            if first.step is not None:
                starts[name].append(first.step)
            shutil.rmtree(folder, ignore_errors=True)
    for name in trees:
        if jobs[name]:
            report.add(Figure("time to job.started", name, str(n), "s", jobs[name]))
        if starts[name]:
            report.add(Figure("time to first step", name, str(n), "s", starts[name]), FIRST_STEP)


# 3. No-op builds.


@dataclass
class NoopFolder:
    """A built folder of one size for one orch, and the environment of its last build."""

    tree: str
    n: int
    folder: Path
    env: dict[str, str]
    plain: list[Run] = field(default_factory=list)
    unread: list[Run] = field(default_factory=list)


def noop(case: NoopFolder, tree: Path, changed: bool, report: Report) -> Run:
    """One no-op build; with `changed`, after a new value of the unread variable."""
    if changed:
        case.env = {**case.env, UNREAD: secrets.token_hex(8)}
    run = orch(tree, case.folder, "build", case.env)
    if run.code != 0 or f"all {steps(case.n)} up to date" not in run.output:
        report.problems.append(f"{case.tree} no-op of {case.n}: {run.output[-500:]!r}")
    return run


def measure_noop(
    trees: dict[str, Path],
    templates: dict[int, Path],
    runs: int,
    scratch: Path,
    report: Report,
) -> None:
    cases: list[NoopFolder] = []
    for n, template in templates.items():
        for index, (name, tree) in enumerate(trees.items()):
            env = {**orch_env(tree), UNREAD: secrets.token_hex(8)}
            case = NoopFolder(name, n, fresh(template, scratch / f"noop-{n}-{index}"), env)
            first = orch(tree, case.folder, "build", case.env)
            if first.code != 0:
                report.problems.append(f"{name} first build of {n}: {first.output[-500:]!r}")
                continue
            report.add(Figure("first build (once)", name, str(n), "s", [first.wall]))
            cases.append(case)
    for round_ in range(runs):
        for case in cases:
            tree = trees[case.tree]
            for changed in (False, True) if round_ % 2 == 0 else (True, False):
                (case.unread if changed else case.plain).append(noop(case, tree, changed, report))
    for case in cases:
        add_noop_figures(case, report)


def add_noop_figures(case: NoopFolder, report: Report) -> None:
    big = case.n >= BIG
    n = str(case.n)
    plain = Figure("no-op", case.tree, n, "s", [r.wall for r in case.plain])
    report.add(plain, NOOP_BIG if big else None)
    rss = Figure("no-op peak RSS", case.tree, n, "MB", [r.rss_mb for r in case.plain])
    report.add(rss, RSS_BIG if big else None)
    unread = Figure("no-op, unread env changed", case.tree, n, "s", [r.wall for r in case.unread])
    report.add(unread)
    ratio = Figure("no-op unread/plain", case.tree, n, "", [unread.median / plain.median])
    report.add(ratio, UNREAD_RATIO)


# Output.


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def show(figure: Figure) -> str:
    if figure.unit == "s":
        value = f"{figure.median:.3f} s"
    elif figure.unit == "MB":
        value = f"{figure.median:.0f} MB"
    else:
        value = f"{figure.median:.3f}"
    return (
        f"{figure.figure:<27} {figure.tree:<12} {figure.n:>13} {value:>11} {len(figure.values):>4}"
        f"  {figure.target:<11} {figure.verdict}"
    )


def print_table(report: Report, loads: Sequence[str]) -> None:
    print(f"load (1, 5, 15 min) before: {loads[0]}, after: {loads[1]}")
    header = f"{'figure':<27} {'orch':<12} {'N':>13} {'median':>11} {'runs':>4}  {'target':<11}"
    print(header + " verdict")
    for figure in report.figures:
        print(show(figure))
    print("problems: " + ("; ".join(report.problems) if report.problems else "none"))


def print_json(report: Report, loads: Sequence[str], args: argparse.Namespace) -> None:
    figures = [{**asdict(f), "median": f.median, "runs": len(f.values)} for f in report.figures]
    document = {
        "load": {"before": loads[0], "after": loads[1]},
        "sizes": args.sizes,
        "runs": args.runs,
        "first_runs": args.first_runs,
        "figures": figures,
        "problems": report.problems,
    }
    print(json.dumps(document, indent=2))


def sizes(text: str) -> list[int]:
    values = sorted({int(word) for word in text.split(",") if word.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, comma-separated")
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=sizes, default=[1000, 10000], help="comma-separated N")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--first-runs", type=int, default=3)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-first-step", action="store_true")
    parser.add_argument("--skip-noop", action="store_true")
    parser.add_argument("--before", type=Path, help="another orch checkout to compare with")
    parser.add_argument("--scratch", type=Path, help="where to make the work folders")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a missed target")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.runs < 1 or args.first_runs < 1:
        parser.error("--runs and --first-runs are at least 1")
    return args


def measure(args: argparse.Namespace, scratch: Path, report: Report) -> None:
    trees = {"orch": ROOT}
    if args.before is not None:
        trees["orch before"] = args.before.resolve()
    templates: dict[int, Path] = {}
    for n in args.sizes:
        templates[n] = scratch / f"template-{n}"
        write_pipeline(templates[n], n)
    parts: list[Callable[[], None]] = []
    if not args.skip_load:
        parts.append(lambda: measure_load(trees, templates, args.runs, report))
    if not args.skip_first_step:
        n = max(templates)
        parts.append(
            lambda: measure_first_step(trees, templates[n], n, args.first_runs, scratch, report)
        )
    if not args.skip_noop:
        parts.append(lambda: measure_noop(trees, templates, args.runs, scratch, report))
    for part in parts:
        part()


def main() -> int:
    args = parse_args()
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="orch-scale-", dir=args.scratch))
    report = Report()
    load_before = load_average()
    try:
        measure(args, scratch, report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    loads = (load_before, load_average())
    if args.json:
        print_json(report, loads, args)
    else:
        print_table(report, loads)
    missed = any(figure.verdict == "MISS" for figure in report.figures)
    return 1 if report.problems or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())

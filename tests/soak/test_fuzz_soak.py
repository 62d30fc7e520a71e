"""Soak: mutated pipelines through `orch validate`, `graph`, `status` and `build`.

Each mutant (see `tests/mutants.py`) is laid out in its own folder and each command runs in a
process of its own, forked from this one once orch is imported (the real entry point, its exit
code and its output, without paying for Python's start-up on every command). Every command must
exit 0, 1 or 2 within `TIMEOUT_S` (else it hangs) and print no traceback; an invalid pipeline
exits 2 and says where (`file:line:col`) when the problem has a place; nothing is written beside
the mutant's folder (absolute and `..` paths of the mutants point there); and a build that
succeeds is followed by one that runs nothing but `always_run` steps.

`ORCH_SOAK_FUZZ` mutants (200 by default; 2,000 or more locally), `ORCH_SOAK_SEED` the seed.
"""

from __future__ import annotations

import gc
import io
import os
import re
import shutil
import signal
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.mutants import Mutant, Seed, corpus, mutate

COUNT = int(os.environ.get("ORCH_SOAK_FUZZ", "200"))
SEED = int(os.environ.get("ORCH_SOAK_SEED", "0"))
TIMEOUT_S = 20.0
COMMANDS = ("validate", "graph", "status", "build")
FORKED = {"build"}
"""Commands run in a process of their own; the others, which only load the pipeline, run
in-process (half the time)."""
ENVIRONMENT = {"CI": "1", "NO_COLOR": "1", "ORCH_OFFLINE": "1", "ORCH_TEMPLATE_TIMEOUT_S": "0.2"}
"""No live view, no network call whatever provider a mutant names, and a template that runs
away stops after 0.2 s of CPU (well within the time that counts as a hang)."""
RAN = re.compile(r"^\d\d:\d\d:\d\d (?:run|restored)\s+(.*?)\s+\((.*)\)$")


@dataclass(frozen=True)
class Outcome:
    """One command on one mutant; `code` is None when it hung."""

    code: int | None
    stdout: str
    stderr: str


# --------------------------------------------------------------------------- running orch


def _child(args: list[str], cwd: Path, io_dir: Path) -> None:
    """In the forked process: run `orch ARGS` as the console script would, then exit."""
    code = 1
    try:
        os.setpgid(0, 0)
        os.chdir(cwd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(io_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        sys.argv = ["orch", *args]
        code = _exit_code_of_main()
    except BaseException:
        traceback.print_exc()  # what the interpreter prints for an exception orch lets escape
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _exit_code_of_main() -> int:
    from orchestrator.__main__ import main

    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    return 0


def forked(args: list[str], cwd: Path, io_dir: Path) -> Outcome:
    """Run `orch ARGS` in a forked process; kill its process group after `TIMEOUT_S`."""
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():  # Python 3.12 warns about fork() with threads around
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        _child(args, cwd, io_dir)
    code = _wait(pid)
    read = {n: (io_dir / n).read_text(errors="replace") for n in ("stdout", "stderr")}
    return Outcome(code, read["stdout"], read["stderr"])


class Hung(BaseException):
    """An in-process command took longer than `TIMEOUT_S`."""


def _hung(signum: int, frame: object) -> None:
    raise Hung


def in_process(args: list[str], cwd: Path) -> Outcome:
    """Run `orch ARGS` through click's CliRunner, stopped by an alarm after `TIMEOUT_S`; an
    exception that escapes orch is shown as the traceback the console script would print."""
    from click.testing import CliRunner

    from orchestrator.cli.commands import cli

    previous, back = signal.signal(signal.SIGALRM, _hung), Path.cwd()
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=True)
    except Hung:
        return Outcome(None, "", "")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(back)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return Outcome(result.exit_code, result.stdout, stderr)


def _wait(pid: int) -> int | None:
    deadline = time.monotonic() + TIMEOUT_S
    pause = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.002)


def warm_up(folder: Path) -> None:
    """Import and load what the commands use, so each forked process starts with it ready."""
    from orchestrator.engine import build, runner
    from orchestrator.plan import graph
    from orchestrator.plan.loading import load

    seed = next(s for s in corpus() if s.name == "lists")
    loaded = load(Mutant(seed, seed.files[seed.pipeline], ()).write(folder))
    graph.build(loaded)
    del build, runner
    gc.freeze()  # the forked processes then copy fewer pages


# --------------------------------------------------------------------------- checking


@dataclass
class Tally:
    mutants: int = 0
    codes: dict[str, Counter[int | None]] = field(
        default_factory=lambda: {c: Counter() for c in (*COMMANDS, "rebuild")}
    )
    refused: int = 0
    located: int = 0
    unlocated: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    slowest: list[tuple[float, str]] = field(default_factory=list)

    def timed(self, seconds: float, mutant: Mutant) -> None:
        """Keep the five slowest mutants, to show where the time goes."""
        what = f"{mutant.seed.name} {list(mutant.mutations)}"[:200]
        self.slowest = sorted([*self.slowest, (seconds, what)], reverse=True)[:5]

    def summary(self, seconds: float) -> str:
        codes = {c: dict(sorted(n.items(), key=str)) for c, n in self.codes.items()}
        hangs = sum(n[None] for n in self.codes.values())
        located = f"{self.located}/{self.refused}" if self.refused else "0/0"
        lines = [
            f"fuzz soak: seed {SEED}, {self.mutants} mutants in {seconds:.1f} s,"
            f" {len(self.problems)} problems, {hangs} hangs"
            f" ({self.skipped} mutants moving the workdir out drawn again)",
            f"exit codes: {codes}",
            f"refusals of validate with a file:line:col: {located}",
            *(f"  no location ({n}x): {m}" for m, n in self.unlocated.most_common(10)),
            *(f"problem: {problem.splitlines()[0]}" for problem in self.problems),
            "slowest mutants:",
            *(f"  {seconds:.2f} s: {what}" for seconds, what in self.slowest),
        ]
        return "\n".join(lines)


def _escapes(mutant: Mutant, work: Path) -> bool:
    """Whether the mutant moves its workdir outside its folder (orch then writes `.orch/` there,
    as asked), so the check of what is written beside it would not hold."""
    from ruamel.yaml import YAML

    if b"workdir" not in mutant.text:
        return False
    try:
        doc = YAML(typ="safe", pure=True).load(mutant.text)
    except Exception:
        return False
    folder = doc.get("workdir") if isinstance(doc, dict) else None
    if not isinstance(folder, str):
        return False
    try:
        resolved = ((work / mutant.seed.pipeline).parent / folder).resolve()
    except (OSError, ValueError):  # a NUL character, a lone surrogate: orch refuses it too
        return False
    return not resolved.is_relative_to(work.resolve())


def _snapshot(box: Path) -> dict[str, tuple[int, int]]:
    """Every path under `box` but the mutant's folder and the captured output."""
    found = {}
    for top in box.iterdir():
        if top.name in ("work", "io"):
            continue
        for path in [top, *sorted(top.rglob("*"))]:
            stat = path.lstat()
            found[path.relative_to(box).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def _problems(command: str, outcome: Outcome) -> list[str]:
    text = outcome.stdout + outcome.stderr
    found = []
    if outcome.code is None:
        found.append(f"{command} hung (over {TIMEOUT_S:g} s)")
    elif outcome.code not in (0, 1, 2):
        found.append(f"{command} exited {outcome.code}")
    if "Traceback" in text:
        found.append(f"{command} printed a traceback")
    if command != "build" and outcome.code == 1:
        found.append(f"{command} exited 1 (a refused pipeline exits 2)")
    return found


def _disagree(outcomes: dict[str, Outcome]) -> bool:
    """Whether the commands judge the pipeline differently: validate, graph and status give
    the same exit code, and build refuses (2) exactly the pipelines they refuse."""
    codes = {command: outcome.code for command, outcome in outcomes.items()}
    same = codes["validate"] == codes["graph"] == codes["status"]
    return not same or (codes["validate"] == 2) != (codes["build"] == 2)


def _rebuilt_steps(outcome: Outcome) -> list[str]:
    """Steps a build ran or restored, except those it ran because they are `always_run`."""
    found = []
    for line in outcome.stdout.splitlines():
        match = RAN.match(line)
        if match and not match[2].startswith("always_run"):
            found.append(match[1])
    return found


@dataclass
class Trial:
    """One mutant in its folder: `box/work` (the pipeline and its files), `box/outside` (what
    the mutants' absolute paths name), `box/io` (the commands' output)."""

    mutant: Mutant
    box: Path

    @property
    def work(self) -> Path:
        return self.box / "work"

    def run(self, tally: Tally) -> None:
        pipeline = self.mutant.write(self.work)
        (self.box / "io").mkdir()
        before = _snapshot(self.box)
        outcomes = {c: self.command(c, pipeline, tally) for c in COMMANDS}
        self.check_location(outcomes["validate"], pipeline, tally)
        if _disagree(outcomes):
            codes = {c: o.code for c, o in outcomes.items()}
            self.problem(tally, f"the commands disagree: {codes}", outcomes["build"])
        if outcomes["build"].code == 0:
            again = self.command("build", pipeline, tally, "rebuild")
            if _rebuilt_steps(again):
                self.problem(tally, f"the second build ran {_rebuilt_steps(again)}", again)
        if _snapshot(self.box) != before:
            self.problem(tally, "files changed outside the mutant's folder", outcomes["build"])

    def command(self, command: str, pipeline: Path, tally: Tally, label: str = "") -> Outcome:
        args = [command, str(pipeline)]
        if command in FORKED:
            outcome = forked(args, self.work, self.box / "io")
        else:
            outcome = in_process(args, self.work)
        tally.codes[label or command][outcome.code] += 1
        for problem in _problems(command, outcome):
            self.problem(tally, problem, outcome)
        return outcome

    def check_location(self, outcome: Outcome, pipeline: Path, tally: Tally) -> None:
        if outcome.code != 2:
            return
        tally.refused += 1
        if re.search(re.escape(str(pipeline)) + r":\d+:\d+: ", outcome.stderr):
            tally.located += 1
        else:
            first = outcome.stderr.splitlines()[0] if outcome.stderr else ""
            tally.unlocated[first.replace(str(pipeline), "P")[:160]] += 1

    def problem(self, tally: Tally, what: str, outcome: Outcome) -> None:
        detail = f"{self.mutant.seed.name} {list(self.mutant.mutations)}: {what}"
        tally.problems.append(f"{detail}\n--- pipeline\n{self.mutant.text!r}\n--- output\n"
                              f"{outcome.stdout[-2000:]}{outcome.stderr[-3000:]}")  # fmt: skip


def _mutants(seeds: list[Seed], box: Path, tally: Tally) -> list[Mutant]:
    import random

    rng = random.Random(SEED)
    found: list[Mutant] = []
    while len(found) < COUNT:
        seed = seeds[len(found) % len(seeds)]
        mutant = mutate(seed, rng, str(box / "outside"))
        if _escapes(mutant, box / "work"):
            tally.skipped += 1
        else:
            found.append(mutant)
    return found


@pytest.mark.slow
def test_mutated_pipelines_never_crash_or_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in [v for v in os.environ if v.startswith(("ORCH_", "OPENAI_", "ANTHROPIC_"))]:
        monkeypatch.delenv(variable)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    warm_up(tmp_path / "warm-up")
    tally, started, box = Tally(), time.monotonic(), tmp_path / "box"
    for number, mutant in enumerate(_mutants(corpus(), box, tally)):
        box.mkdir()
        (box / "outside").mkdir()
        (box / "outside" / "canary.txt").write_text("canary\n")
        begun = time.monotonic()
        Trial(mutant, box).run(tally)
        tally.timed(time.monotonic() - begun, mutant)
        tally.mutants = number + 1
        shutil.rmtree(box)
    print(tally.summary(time.monotonic() - started))
    assert not tally.problems, f"{len(tally.problems)} problems; the first:\n" + "\n\n".join(
        tally.problems[:3]
    )

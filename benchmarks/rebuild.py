"""Benchmark the edit-one-file-and-rebuild loop: `orch build` after one input of N changed.

Usage:
    python benchmarks/rebuild.py [--n 1000] [--runs 7] [--before TREE]

Generates N one-file copy steps (`inputs: [src/i.txt]`, `run: cp …`) in a temporary folder,
builds them once, then alternates: change one source and time `orch build` (one step reruns),
and time a no-op `orch build`. With `--before TREE` (a checkout of another orch, such as a git
worktree), each round also times that orch on the same edit first, in a folder of its own (a
saved plan belongs to one orch), for a before/after figure.
Every rebuild must print `1 ran, N-1 up to date`. Prints medians and the machine's load.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_pipeline(folder: Path, n: int) -> None:
    (folder / "src").mkdir(parents=True)
    lines = ["version: 1", "steps:"]
    for i in range(n):
        (folder / "src" / f"{i}.txt").write_text(f"{i}\n")
        lines += [
            f"  s{i}:",
            f"    inputs: [src/{i}.txt]",
            f"    output: out/{i}.txt",
            f"    run: mkdir -p out && cp src/{i}.txt out/{i}.txt",
        ]
    (folder / "orch.yaml").write_text("\n".join(lines) + "\n")


def orch_env(tree: Path) -> dict[str, str]:
    """The environment of an orch run from `tree`, writing bytecode as a user's would."""
    env = {**os.environ, "PYTHONPATH": str(tree), "CI": "1", "NO_COLOR": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def orch_build(folder: Path, tree: Path) -> tuple[float, str]:
    """Seconds of one whole `orch build` process run from `tree`, and its output."""
    env = orch_env(tree)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "build"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"orch build failed:\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout


def rebuild(folder: Path, tree: Path, n: int, edit: int) -> float:
    (folder / "src" / f"{edit % n}.txt").write_text(f"edit {edit}\n")
    elapsed, out = orch_build(folder, tree)
    if f"1 ran, {n - 1} up to date" not in out:
        raise SystemExit(f"expected one step to rerun:\n{out}")
    return elapsed


def command_time(folder: Path, edit: int, n: int) -> float:
    """Seconds of the rerun step's own command, run as orch runs it (`/bin/sh -ec`)."""
    i = edit % n
    started = time.perf_counter()
    subprocess.run(
        ["/bin/sh", "-ec", f"mkdir -p out && cp src/{i}.txt out/{i}.txt"], cwd=folder, check=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", type=Path, help="another orch checkout to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder, other = Path(temp) / "after", Path(temp) / "before"
        write_pipeline(folder, args.n)
        orch_build(folder, ROOT)
        if args.before is not None:
            write_pipeline(other, args.n)
            orch_build(other, args.before)
        before, after, noop, command = [], [], [], []
        for run in range(args.runs):
            if args.before is not None:
                before.append(rebuild(other, args.before, args.n, run))
            after.append(rebuild(folder, ROOT, args.n, run))
            noop.append(orch_build(folder, ROOT)[0])
            command.append(command_time(folder, run, args.n))
    print(f"load {os.getloadavg()[0]:.1f}, {args.runs} runs, {args.n} steps (medians)")
    if before:
        print(f"rebuild after one edit, before: {statistics.median(before):.2f} s")
    print(f"rebuild after one edit: {statistics.median(after):.2f} s")
    print(f"no-op: {statistics.median(noop) * 1000:.0f} ms")
    print(f"the step's command alone: {statistics.median(command) * 1000:.1f} ms")
    target = statistics.median(noop) + statistics.median(command) + 0.1
    verdict = "PASS" if statistics.median(after) <= target else "FAIL"
    print(f"target: rebuild <= no-op + command + 100 ms = {target:.2f} s: {verdict}")


if __name__ == "__main__":
    main()

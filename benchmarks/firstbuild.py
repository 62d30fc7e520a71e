"""Benchmark a first build of N shell steps: `orch build -j 2` against `make -r -j2`.

Usage:
    python benchmarks/firstbuild.py [--n 1000] [--runs 7] [--before TREE]

Generates N one-file copy steps (`inputs: [src/i.txt]`, `output: out/i.txt`,
`run: mkdir -p out && cp src/i.txt out/i.txt`, as `rebuild.py` does) and the same N explicit
rules in a Makefile, then alternates, each round in a fresh copy of the folder: GNU make,
this orch and, with `--before TREE` (another orch checkout), that orch. Each timing is the
wall clock of the whole command, with its user and system CPU time. Prints the medians, the
ratio of orch's median to make's, the load average, and the bytes orch wrote to the lock file
and its journal during the last build (counted with `strace -e trace=write,pwrite64` when
strace is installed, in one extra build outside the timed rounds, as strace slows a build).
Standard library only.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rebuild import orch_env, write_pipeline

ROOT = Path(__file__).resolve().parent.parent


class Timing(NamedTuple):
    """The wall clock and CPU seconds of one command and its children."""

    wall: float
    user: float
    system: float


def write_makefile(folder: Path, n: int) -> None:
    """One explicit rule per step, doing what the orch step does."""
    lines = [".PHONY: all", "all: " + " ".join(f"out/{i}.txt" for i in range(n)), ""]
    for i in range(n):
        lines += [f"out/{i}.txt: src/{i}.txt", f"\tmkdir -p out && cp src/{i}.txt out/{i}.txt"]
    (folder / "Makefile").write_text("\n".join(lines) + "\n")


def timed(command: list[str], folder: Path, env: dict[str, str]) -> Timing:
    """Run `command` in `folder`; its timing; exit if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout!r}{done.stderr!r}")
    return Timing(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def orch_command() -> list[str]:
    return [sys.executable, "-m", "orchestrator", "build", "-j", "2"]


def fresh(template: Path, scratch: Path, name: str) -> Path:
    """A fresh copy of the generated folder (sources, pipeline, Makefile; nothing built)."""
    folder = scratch / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(template, folder)
    return folder


def lock_bytes(template: Path, scratch: Path, tree: Path) -> tuple[int, int] | None:
    """Bytes written to the lock file and its journal during one first build, and the final
    lock's size; None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    folder = fresh(template, scratch, "strace")
    trace = scratch / "trace"
    command = [strace, "-f", "-qq", "-y", "-e", "trace=write,pwrite64", "-o", str(trace)]
    timed([*command, *orch_command()], folder, orch_env(tree))
    pattern = re.compile(r"write(?:64)?\(\d+<([^>]*)>, .*\) = (\d+)$")
    written = 0
    for line in trace.read_text(errors="replace").splitlines():
        match = pattern.search(line)
        if match and _is_lock_file(Path(match[1]).name):
            written += int(match[2])
    return written, (folder / "orch.lock").stat().st_size


def _is_lock_file(name: str) -> bool:
    """The lock, its journal, or a temp file that replaces the lock."""
    return name in ("orch.lock", ".orch.lock.journal") or name.startswith(".orch.lock.")


def median(timings: list[Timing]) -> Timing:
    return Timing(*(statistics.median(values) for values in zip(*timings, strict=True)))


def show(name: str, timing: Timing, make: Timing) -> None:
    print(
        f"{name:<12} {timing.wall:6.2f} s  (user {timing.user:5.2f} s, sys {timing.system:5.2f} s)"
        f"  {timing.wall / make.wall:4.1f}x make"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", type=Path, help="another orch checkout to compare with")
    parser.add_argument("--no-lock-bytes", action="store_true", help="skip the strace build")
    parser.add_argument("--lock-bytes-only", action="store_true", help="only the strace build")
    args = parser.parse_args()
    trees = {"orch": ROOT}
    if args.before is not None:
        trees["orch before"] = args.before.resolve()
    with tempfile.TemporaryDirectory() as temp:
        scratch = Path(temp)
        template = scratch / "template"
        write_pipeline(template, args.n)
        write_makefile(template, args.n)
        make: list[Timing] = []
        orch: dict[str, list[Timing]] = {name: [] for name in trees}
        for _ in range(0 if args.lock_bytes_only else args.runs):
            make.append(timed(["make", "-r", "-s", "-j2"], fresh(template, scratch, "m"), {}))
            for name, tree in trees.items():
                folder = fresh(template, scratch, "o")
                orch[name].append(timed(orch_command(), folder, orch_env(tree)))
        written = None if args.no_lock_bytes else lock_bytes(template, scratch, ROOT)
        load = Path("/proc/loadavg").read_text().split()[0]
    print(f"first build of {args.n} copy steps, -j 2: medians of {len(make)} runs, load {load}")
    if make:
        show("make", median(make), median(make))
        for name, timings in orch.items():
            show(name, median(timings), median(make))
    if written is not None:
        total, size = written
        print(f"lock bytes written: {total} ({total / size:.1f}x the final lock's {size} bytes)")


if __name__ == "__main__":
    main()

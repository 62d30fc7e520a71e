"""Benchmark the start-up time of `orch --version` (whole process, wall time).

Usage:
    python benchmarks/startup.py [--runs N]

Runs each command 3 times to warm up, then N times (default 30), alternating
between `orch --version` and the `python -c pass` baseline so both see the
same machine conditions. Prints median, min and p90 in milliseconds, checks the
target (median of `orch --version` <= 80 ms) and lists which heavy
dependencies `orch --version` imports (expected: none).

Standard library only. Exits 1 if a measured command fails, otherwise 0
(a missed target is reported as FAIL but does not change the exit code).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

WARMUPS = 3
DEFAULT_RUNS = 30
TARGET_MS = 80.0
HEAVY_MODULES = ("networkx", "jinja2", "pydantic", "httpx", "click")


def orch_command() -> list[str]:
    """The real console script next to this interpreter (not a pyenv shim from PATH)."""
    script = Path(sys.executable).parent / "orch"
    if script.is_file():
        return [str(script), "--version"]
    return [sys.executable, "-m", "orchestrator", "--version"]


def run_once(cmd: list[str]) -> float:
    """Run `cmd` once; return its wall time in milliseconds. Exit 1 if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000.0
    if proc.returncode != 0:
        print(f"error: {' '.join(cmd)} exited with {proc.returncode}", file=sys.stderr)
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        sys.exit(1)
    return elapsed


def p90(samples: list[float]) -> float:
    """90th percentile, nearest-rank method."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def imported_heavy_modules(cmd: list[str]) -> list[str]:
    """Which of HEAVY_MODULES `cmd` imports, from its `-X importtime` report on stderr."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")  # same as `python -X importtime`
    proc = subprocess.run(cmd, capture_output=True, check=False, env=env)
    if proc.returncode != 0:
        print(f"error: {' '.join(cmd)} exited with {proc.returncode}", file=sys.stderr)
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        sys.exit(1)
    imported = set()
    for line in proc.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:"):
            continue
        name = line.rsplit("|", 1)[-1].strip()
        imported.add(name.split(".", 1)[0])
    return sorted(m for m in HEAVY_MODULES if m in imported)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help=f"measured runs (default {DEFAULT_RUNS})"
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    orch = orch_command()
    commands = {
        "orch --version": orch,
        "python -c pass": [sys.executable, "-c", "pass"],
    }

    for _ in range(WARMUPS):
        for cmd in commands.values():
            run_once(cmd)
    samples: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(args.runs):
        for label, cmd in commands.items():
            samples[label].append(run_once(cmd))

    print(f"python:  {sys.executable} ({sys.version.split()[0]})")
    print(f"orch:    {' '.join(orch)}")
    print(f"cpus:    {os.cpu_count()}")
    print()
    header = f"{'command':<16} {'median ms':>10} {'min ms':>8} {'p90 ms':>8} {'runs':>5}"
    print(header)
    print("-" * len(header))
    for label, values in samples.items():
        print(
            f"{label:<16} {statistics.median(values):>10.1f} {min(values):>8.1f}"
            f" {p90(values):>8.1f} {len(values):>5}"
        )
    print()

    median_orch = statistics.median(samples["orch --version"])
    overhead = median_orch - statistics.median(samples["python -c pass"])
    print(f"orch --version over the python -c pass baseline: {overhead:+.1f} ms (median)")
    verdict = "PASS" if median_orch <= TARGET_MS else "FAIL"
    print(f"target: <= {TARGET_MS:.0f} ms median for orch --version: {verdict}")

    heavy = imported_heavy_modules(orch)
    print(
        f"heavy modules imported by orch --version ({', '.join(HEAVY_MODULES)}): "
        f"{', '.join(heavy) if heavy else 'none'}"
    )

    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        print(f"note: hyperfine found at {hyperfine}; it is not required by this script.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

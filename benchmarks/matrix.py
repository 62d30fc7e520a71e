"""Benchmark the no-op build of a 1,000-step matrix pipeline against 1,000 explicit steps.

Usage:
    python benchmarks/matrix.py [--n-a 40] [--n-b 25] [--runs 9] [--json]

Builds two workdirs doing the same work, N = n_a * n_b one-file copy steps (`cp src/A-B.txt
out/A-B.txt`): one written as N explicit steps, one as a single step with
`foreach: {matrix: {a: [...], b: [...]}}`. Each is built once (the first build, timed once),
then their no-op builds (everything up to date) are timed `--runs` times each, alternating, so
both see the same machine. Target: the matrix pipeline's no-op median within 10 % of the
explicit one's (ratio <= 1.10).

Wall time is `time.perf_counter` around the whole `orch build` process. Standard library only.
Exits 1 if a build fails or a no-op build does not say everything is up to date.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.10


def orch_executable() -> list[str]:
    """The console script next to this interpreter (not a pyenv shim from PATH)."""
    script = Path(sys.executable).parent / "orch"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "orchestrator"]


def write_sources(folder: Path, n_a: int, n_b: int) -> None:
    (folder / "src").mkdir(parents=True)
    (folder / "out").mkdir()
    for a in range(n_a):
        for b in range(n_b):
            (folder / "src" / f"{a}-{b}.txt").write_text(f"{a} {b}\n")


def explicit_pipeline(n_a: int, n_b: int) -> str:
    lines = ["version: 1", "name: explicit", "steps:"]
    for a in range(n_a):
        for b in range(n_b):
            lines += [
                f"  s{a}-{b}:",
                f"    inputs: [src/{a}-{b}.txt]",
                f"    output: out/{a}-{b}.txt",
                f"    run: cp src/{a}-{b}.txt out/{a}-{b}.txt",
            ]
    return "\n".join(lines) + "\n"


def matrix_pipeline(n_a: int, n_b: int) -> str:
    name = "{{ item.a }}-{{ item.b }}"
    return (
        "\n".join(
            [
                "version: 1",
                "name: matrix",
                "steps:",
                "  s:",
                "    foreach:",
                "      matrix:",
                f"        a: [{', '.join(str(a) for a in range(n_a))}]",
                f"        b: [{', '.join(str(b) for b in range(n_b))}]",
                f'    inputs: ["src/{name}.txt"]',
                f'    output: "out/{name}.txt"',
                f'    run: "cp src/{name}.txt out/{name}.txt"',
            ]
        )
        + "\n"
    )


def timed_build(orch: list[str], folder: Path) -> tuple[float, str]:
    """Seconds one `orch build` took in `folder`, and its output; exit 1 if it failed."""
    started = time.perf_counter()
    done = subprocess.run(
        [*orch, "build"], cwd=folder, capture_output=True, text=True, env=_env(), check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"orch build failed in {folder}:\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env["NO_COLOR"] = "1"
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-a", type=int, default=40)
    parser.add_argument("--n-b", type=int, default=25)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    orch, n = orch_executable(), args.n_a * args.n_b
    with tempfile.TemporaryDirectory(prefix="orch-matrix-") as tmp:
        folders = {"explicit": Path(tmp, "explicit"), "matrix": Path(tmp, "matrix")}
        first = {}
        for shape, folder in folders.items():
            write_sources(folder, args.n_a, args.n_b)
            text = (explicit_pipeline if shape == "explicit" else matrix_pipeline)(
                args.n_a, args.n_b
            )
            (folder / "orch.yaml").write_text(text)
            first[shape], _ = timed_build(orch, folder)
        noop: dict[str, list[float]] = {shape: [] for shape in folders}
        for _ in range(args.runs):
            for shape, folder in folders.items():
                elapsed, output = timed_build(orch, folder)
                if not output.endswith(f"all {n} steps up to date\n"):
                    sys.exit(f"the no-op build of {shape} did not say so:\n{output}")
                noop[shape].append(elapsed)
    medians = {shape: statistics.median(times) for shape, times in noop.items()}
    ratio = medians["matrix"] / medians["explicit"]
    result = {
        "steps": n,
        "runs": args.runs,
        "first_build_s": first,
        "noop_median_ms": {shape: round(m * 1000, 1) for shape, m in medians.items()},
        "noop_samples_ms": {s: [round(t * 1000, 1) for t in ts] for s, ts in noop.items()},
        "ratio": round(ratio, 3),
        "target": TARGET_RATIO,
        "result": "PASS" if ratio <= TARGET_RATIO else "FAIL",
        "load": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{n} steps, {args.runs} no-op builds each, alternating (load {os.getloadavg()})")
        for shape in folders:
            print(f"  no-op, {shape:<8} median {medians[shape] * 1000:7.1f} ms")
        print(f"  matrix / explicit: {ratio:.3f} (target <= {TARGET_RATIO}): {result['result']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""benchmarks/scale.py times load, the first step and no-op builds, and prints every figure."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .buildkit import run_benchmark


def run_scale(scratch: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_benchmark("scale.py", "--runs", "1", "--scratch", str(scratch), *args)


@pytest.mark.slow
def test_prints_every_figure_with_its_target_and_cleans_up(tmp_path: Path) -> None:
    done = run_scale(tmp_path, "--sizes", "20,40", "--first-runs", "1")

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.startswith("load (1, 5, 15 min) before: ")
    for figure in (
        "load (orch validate)",
        "load growth exponent",
        "time to job.started",
        "time to first step",
        "first build (once)",
        "no-op peak RSS",
        "no-op, unread env changed",
        "no-op unread/plain",
    ):
        assert figure in out
    assert "20-40" in out and "<= 1.05" in out and "<= 2 s" in out and "<= 1.10" in out
    assert "problems: none" in out
    assert list(tmp_path.iterdir()) == []


def test_json_holds_the_runs_of_each_no_op_figure(tmp_path: Path) -> None:
    done = run_scale(tmp_path, "--sizes", "20", "--json", "--skip-load", "--skip-first-step")

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["problems"] == []
    noop = [f for f in report["figures"] if f["figure"] == "no-op"]
    assert [(f["n"], f["runs"]) for f in noop] == [("20", 1)]
    assert {f["figure"] for f in report["figures"]} == {
        "first build (once)",
        "no-op",
        "no-op peak RSS",
        "no-op, unread env changed",
        "no-op unread/plain",
    }

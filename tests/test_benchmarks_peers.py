"""benchmarks/peers.py runs orch and a peer on the same work and prints medians and ratios."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .buildkit import run_benchmark

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make not installed")


def run_peers(*args: str) -> subprocess.CompletedProcess[str]:
    return run_benchmark("peers.py", "--n", "20", "--runs", "1", "--peers", "make,floor", *args)


@pytest.mark.slow
def test_prints_ratios_targets_and_no_problem() -> None:
    done = run_peers()

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "copy 20" in out and "DAG 20" in out
    assert "orch/make" in out and "orch/floor" in out
    assert "first build copy 20 <= 2x make:" in out
    assert "no-op copy 20 <= 3x Python floor:" in out
    assert "first build copy 20 <= doit: not measured" in out
    assert "problems: none" in out


@pytest.mark.slow
def test_json_has_every_figure_of_orch_and_the_peer() -> None:
    done = run_peers("--json", "--strict", "--budget", "1000")

    report = json.loads(done.stdout)
    for work in ("copy", "DAG"):
        for figure in ("first", "rebuild", "noop"):
            assert report["figures"][work][figure]["orch"]["runs"] == 1
            assert report["figures"][work][figure]["make"]["runs"] == 1
            assert f"{work}/{figure}/orch_over_make" in report["ratios"]
        assert report["figures"][work]["noop"]["floor"]["runs"] == 1
    assert report["problems"] == []
    # --strict: exit 1 on a missed target, else 0.
    assert done.returncode == (1 if any(t["verdict"] == "FAIL" for t in report["targets"]) else 0)


def test_an_unknown_peer_is_a_usage_error() -> None:
    done = run_benchmark("peers.py", "--peers", "bazel")

    assert done.returncode == 2
    assert "unknown peers: bazel" in done.stderr

"""Soak: `kill -9` of `orch build` at a random moment, over and over.

The pipeline has a group planned from another step's output, so kills also land between a
build's rounds. Each try changes the project at random (nothing, outputs removed, the lock file
removed, or all of orch's state removed), starts `orch build`, kills it with SIGKILL after a
random delay (most of the time, once a step has started) — orch alone, its process group, or the
whole tree of orch and its steps — and builds again: that build completes with the outputs of a
reference build, leaves no temp file and no step process alive, and the build after it runs
nothing.

ORCH_SOAK_KILLS sets the number of tries (10 by default) and ORCH_SOAK_SEED the seed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.engine.leftovers import TEMP_NAME
from tests.buildkit import Project, kill_group, live_members, wait_for
from tests.signalkit import wait_until_handled

TRIES = int(os.environ.get("ORCH_SOAK_KILLS", "10"))
SEED = int(os.environ.get("ORCH_SOAK_SEED", "930"))
LATEST_S = 0.8
"""The longest wait before the kill: about as long as a build here."""

PIPELINE = """\
version: 1
steps:
  page:
    foreach: "{{ range(8) | list }}"
    inputs: [src.txt]
    template: "{{ item }}: {{ read('src.txt') }}"
    output: "out/p{{ item }}.txt"
  wave:
    foreach: "{{ range(4) | list }}"
    needs: [page]
    run: "echo $$ >> pids.log; sleep 0.2 & wait; cat out/p{{ item }}.txt > out/w{{ item }}.txt"
    output: "out/w{{ item }}.txt"
  gen:
    inputs: [src.txt]
    run: "echo $$ >> pids.log; mkdir -p gen/sub; sleep 0.3 & wait; cp src.txt gen/sub/a.txt"
    output: gen/
  plan:
    inputs: [src.txt]
    run: >-
      echo $$ >> pids.log; mkdir -p build; sleep 0.1 & wait;
      echo '[{"n": "x"}, {"n": "y"}]' > build/rows.json
    output: build/rows.json
  part:
    foreach: {rows: "{{ steps.plan.output }}", key: n}
    run: "echo $$ >> pids.log; sleep 0.1 & wait; echo {{ item.n }} > out/r{{ item.n }}.txt"
    output: "out/r{{ item.n }}.txt"
"""


def outputs(root: Path) -> dict[str, str]:
    """The content of every output file."""
    files = [*root.glob("out/*"), *root.glob("gen/**/*"), *root.glob("build/*")]
    return {p.relative_to(root).as_posix(): p.read_text() for p in files if p.is_file()}


def temp_files(root: Path) -> list[str]:
    """Files anywhere under root named as orch's temp files."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if TEMP_NAME.match(p.name)
    )


def groups(project: Project) -> list[int]:
    """Every process group a step of the project started, in order."""
    text = project.read("pids.log") if project.exists("pids.log") else ""
    return [int(line) for line in text.split()]


def prepare(project: Project, rng: random.Random) -> str:
    """Change the project so the next build has something (or nothing) to do; what changed."""
    # Only "state" (no cache left) makes the shell steps run again: it comes up more often.
    change = rng.choice(["nothing", "outputs", "lock", "state", "state", "state"])
    if change in ("outputs", "state"):
        shutil.rmtree(project.root / "out", ignore_errors=True)
        shutil.rmtree(project.root / "gen", ignore_errors=True)
        shutil.rmtree(project.root / "build", ignore_errors=True)
    if change in ("lock", "state"):
        (project.root / "orch.lock").unlink(missing_ok=True)
    if change == "state":
        shutil.rmtree(project.root / ".orch", ignore_errors=True)
    return change


TARGETS = ("orch", "its process group", "the whole tree")


def kill(project: Project, process: subprocess.Popen[str], target: str) -> None:
    """SIGKILL to orch alone, to its process group (orch leads one; steps run in groups of
    their own, so this is orch too, as a terminal's or a CI runner's group kill would be), or
    to orch and every step process group at once (a machine's or a container's end)."""
    if target == "orch":
        process.send_signal(signal.SIGKILL)
        return
    kill_group(process.pid)
    if target == "the whole tree":
        for group in groups(project):
            kill_group(group)


def kill_a_build(project: Project, rng: random.Random, reference: dict[str, str]) -> str:
    """One try: change the project, build, kill -9 at a random moment, check; the outcome."""
    change = prepare(project, random.Random(rng.random()))
    started = len(groups(project))
    process = project.spawn("build", "-j", "4", session=True)
    wait_until_handled(process)
    if rng.random() < 0.7:  # kill while steps run, more often than by chance
        wait_for(lambda: process.poll() is not None or len(groups(project)) > started)
        time.sleep(rng.uniform(0, LATEST_S / 4))
    else:
        time.sleep(rng.uniform(0, LATEST_S))  # only to choose when to kill
    target = rng.choice(TARGETS)
    kill(project, process, target)
    code = process.wait()
    survivors = any(live_members(group) for group in groups(project))

    build = project.orch("build")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert [group for group in groups(project) if live_members(group)] == []
    assert outputs(project.root) == reference
    assert temp_files(project.root) == []
    again = project.orch("build")
    assert again.exit_code == 0
    assert again.started() == []
    ending = "finished" if code == 0 else f"{target} killed"
    return f"{change}: {ending}{' (steps left running)' if survivors else ''}"


@pytest.mark.slow
def test_a_kill_at_any_moment_is_cleared_by_the_next_build(
    project: Project, tmp_path: Path
) -> None:
    reference_project = Project(tmp_path / "reference")
    for each in (reference_project, project):
        each.write("orch.yaml", PIPELINE)
        each.write("src.txt", "seed\n")
    first = reference_project.spawn("build")
    assert first.wait() == 0, first.communicate()
    reference = outputs(reference_project.root)
    assert len(reference) == 16
    rng = random.Random(SEED)
    try:
        outcomes = Counter(kill_a_build(project, rng, reference) for _ in range(TRIES))
    finally:
        for group in groups(project):
            kill_group(group)
        reference_project.cleanup()
    print(f"\n{TRIES} kills (seed {SEED}):", dict(sorted(outcomes.items())))

"""Soak: SIGINT or SIGTERM at a random moment of a build, over and over.

Each try changes the project at random (nothing, an input edited, outputs and lock removed, or
all of orch's state removed), starts `orch build`, waits until orch handles signals (or, every
other try on average, until the build opened its run), then sends SIGINT or SIGTERM after a
random delay. Whatever the moment, the build ends with exit 130 (or 0
if it had finished), no traceback, no temp file, a lock file that parses and a closed run; the
next build completes and the one after runs nothing.

ORCH_SOAK_SIGNALS sets the number of tries (10 by default; run 60 or more locally) and
ORCH_SOAK_SEED the seed of the random choices.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections import Counter

import pytest

from tests.buildkit import Project, wait_for
from tests.signalkit import CANCELLED, ended, resumes, wait_until_handled

TRIES = int(os.environ.get("ORCH_SOAK_SIGNALS", "10"))
SEED = int(os.environ.get("ORCH_SOAK_SEED", "1130"))
LATEST_S = 1.2
"""The longest wait before the signal: about as long as the longest build here."""

PIPELINE = """\
version: 1
steps:
  page:
    foreach: "{{ range(16) | list }}"
    inputs: [src.txt]
    template: "{{ item }}: {{ read('src.txt') }}"
    output: "out/p{{ item }}.txt"
  wave:
    foreach: "{{ range(8) | list }}"
    needs: [page]
    run: "cat out/p{{ item }}.txt > out/w{{ item }}.txt"
    output: "out/w{{ item }}.txt"
  next:
    foreach: "{{ range(8) | list }}"
    inputs: ["out/w{{ item }}.txt"]
    template: "{{ read('out/w' ~ item ~ '.txt') | upper }}"
    output: "out/n{{ item }}.txt"
  slow:
    inputs: [src.txt]
    run: "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.02; done; cat src.txt > out/slow.txt"
    output: out/slow.txt
"""


def prepare(project: Project, rng: random.Random) -> str:
    """Change the project so the next build has something (or nothing) to do; what changed."""
    change = rng.choice(["nothing", "input", "outputs", "state"])
    if change == "input":
        project.write("src.txt", f"seed {rng.random()}\n")
    if change in ("outputs", "state"):
        shutil.rmtree(project.root / "out", ignore_errors=True)
        (project.root / "orch.lock").unlink(missing_ok=True)
    if change == "state":
        shutil.rmtree(project.root / ".orch")
    return change


def signal_a_build(project: Project, rng: random.Random) -> str:
    """One try: change the project, build, signal at a random moment, check; the outcome."""
    change = prepare(project, rng)
    sig = rng.choice([signal.SIGINT, signal.SIGTERM])
    before = project.run_folders()
    process = project.spawn("build", "-j", "4")
    wait_until_handled(process)
    if rng.random() < 0.5:
        wait_for(lambda: process.poll() is not None or project.run_folders() - before)
    time.sleep(rng.uniform(0, LATEST_S))  # only to choose when to signal
    process.send_signal(sig)
    ending = ended(project, process, before, may_finish=True)
    resumes(project)
    status = "cancelled" if ending.code == CANCELLED else "finished"
    return f"{change}: {status} ({'no run' if ending.run is None else 'run'})"


@pytest.mark.slow
def test_a_signal_at_any_moment_ends_the_build_cleanly_and_the_next_build_resumes(
    project: Project,
) -> None:
    rng = random.Random(SEED)
    project.write("orch.yaml", PIPELINE)
    project.write("src.txt", "seed\n")
    assert project.orch("build").exit_code == 0
    outcomes = Counter(signal_a_build(project, rng) for _ in range(TRIES))
    print(f"\n{TRIES} signals (seed {SEED}):", dict(sorted(outcomes.items())))

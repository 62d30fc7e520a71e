"""Soak: a step swaps output folders for symlinks to an outside canary folder at random moments
while orch builds, restores, clears and writes; the canary must never change.

`ORCH_SOAK_SYMLINKS` builds (20 by default; run 200 or more locally), each with a random mix of
changed sources (so steps run, restore from the cache or stay up to date), stray files in output
folders, job counts and swaps. `ORCH_SOAK_SEED` replays a sequence.
"""

from __future__ import annotations

import json
import os
import random
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..buildkit import Project, read_events, snapshot

TRIES = int(os.environ.get("ORCH_SOAK_SYMLINKS", "20"))  # read before fixtures clear ORCH_*
SEED = int(os.environ.get("ORCH_SOAK_SEED", "20261130"))
GENERATORS = 4
PAGES = 2
TARGETS = [
    *(f"out{i}{sub}" for i in range(GENERATORS) for sub in ("", "/sub", "/sub/deep")),
    *(f"pages{i}" for i in range(PAGES)),
]

WRITER = """\
W=$(pwd -P)
into() {
  mkdir "$1" 2>/dev/null; cd "$1" && case "$(pwd -P)" in "$W"/*) ;; *) exit 3;; esac || exit 3
}
"""
"""Step commands enter each folder and check it is the workdir's before writing in it, so a
swapped folder makes the step fail instead of writing into the canary itself."""


def pipeline() -> str:
    steps: dict[str, dict[str, object]] = {
        "chaos": {"always_run": True, "run": "sh chaos.sh > chaos.txt", "output": "chaos.txt"},
        "gate": {"always_run": True, "run": "echo > gate.txt", "output": "gate.txt"},
    }
    for i in range(GENERATORS):
        steps[f"gen{i}"] = {
            "needs": ["gate"],
            "inputs": [f"src{i}.txt"],
            "run": WRITER
            + f"v=$(cat src{i}.txt); into out{i}; echo $v > a.txt; into sub; echo $v > x.txt;"
            + " into deep; echo $v > y.txt",
            "outputs": [f"out{i}/"],
        }
    for i in range(PAGES):
        steps[f"page{i}"] = {
            "needs": ["gate"],
            "inputs": [f"src{i}.txt"],
            "template": f"{{{{ read('src{i}.txt') }}}}",
            "output": f"pages{i}/index.txt",
        }
    return json.dumps({"version": 1, "steps": steps}, indent=1)


def chaos_script(rng: random.Random, canary: Path) -> str:
    """Swaps at random moments: a busy loop of random length, then a folder for a symlink,
    unless a folder on its way is already one (the script must not reach the canary itself)."""
    lines = ["spin() { i=0; while [ $i -lt $1 ]; do i=$((i+1)); done; }"]
    for target in rng.sample(TARGETS, rng.randint(1, 4)):
        parts = target.split("/")
        ancestors = ["/".join(parts[:n]) for n in range(1, len(parts))]
        guard = " && ".join(f'[ ! -L "{a}" ]' for a in ancestors) or "true"
        lines.append(f"spin {rng.randint(0, 20000)}")
        lines.append(
            f"if {guard}; then rm -rf {target} && ln -s {json.dumps(str(canary))} {target}"
            f" && echo swapped {target}; fi 2>/dev/null"
        )
    return "\n".join([*lines, "true", ""])


def plant_canary(root: Path) -> Path:
    """The outside folder, holding names like the outputs' (and an empty folder)."""
    for name in ["a.txt", "x.txt", "y.txt", "index.txt", "sub/x.txt", "sub/deep/y.txt"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"canary {name}\n")
    (root / "deep").mkdir()
    return root


@dataclass
class Tally:
    builds: int = 0
    swaps: int = 0
    left: int = 0
    refused: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, run: Path | None) -> None:
        self.builds += 1
        events = read_events(run) if run is not None else []
        for event in events:
            if event["type"] == "step.failed" and event["data"].get("kind") == "refused":
                self.refused += 1
            if event["type"] in ("step.restored", "step.succeeded", "step.skipped"):
                self.statuses[event["type"]] = self.statuses.get(event["type"], 0) + 1


def prepare(project: Project, rng: random.Random, canary: Path) -> None:
    """Random sources (three values each, so keys repeat), stray files, and the chaos."""
    for i in range(GENERATORS):
        project.write(f"src{i}.txt", f"v{rng.randint(0, 2)}\n")
        stray = project.root / f"out{i}" / "sub" / f"stray{rng.randint(0, 1)}.txt"
        if rng.random() < 0.3 and stray.parent.is_dir():
            stray.write_text("stray\n")
    project.write("chaos.sh", chaos_script(rng, canary))


def repair(project: Project) -> int:
    """Remove the symlinks the chaos left (deepest first); how many there were."""
    links = [t for t in sorted(TARGETS, reverse=True) if (project.root / t).is_symlink()]
    for target in links:
        (project.root / target).unlink()
    return len(links)


@pytest.mark.slow
def test_symlink_swaps_never_change_the_canary(project: Project, tmp_path: Path) -> None:
    tries, seed = TRIES, SEED
    rng = random.Random(seed)
    canary = plant_canary(tmp_path / "canary")
    was = snapshot(canary)
    project.pipeline(pipeline())
    tally = Tally()
    for attempt in range(tries):
        prepare(project, rng, canary)
        before = project.run_folders()
        process = project.spawn("build", "-k", "-j", str(rng.choice([1, 2, 4])))
        stdout, stderr = process.communicate(timeout=120)
        context = f"seed {seed}, try {attempt}:\n{stdout}{stderr}"
        assert snapshot(canary) == was, context
        assert "Traceback" not in stdout + stderr, context
        assert process.returncode in (0, 1), context
        new = project.run_folders() - before
        tally.add(new.pop() if new else None)
        chaos = project.root / "chaos.txt"
        tally.swaps += chaos.read_text().count("swapped") if chaos.exists() else 0
        tally.left += repair(project)
    summary = textwrap.dedent(
        f"""\
        symlink soak: seed {seed}, {tally.builds} builds, {tally.swaps} swaps ({tally.left} still
        there after the build), {tally.refused} refusals, {tally.statuses}, canary changes: 0"""
    )
    print(summary)
    assert tally.builds == tries

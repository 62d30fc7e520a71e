"""Damaging orch's state files the way crashes, bad merges and failing disks do, and checking
that a build afterwards is refused (exit 2, the file named) or equals a clean build.

The project's steps are deterministic, so a clean build's outputs and lock are the reference:
a build after corruption that exits 0 must leave exactly those.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

from .buildkit import Build, Project

PIPELINE = """\
version: 1
steps:
  copy:
    inputs: [src/a.txt]
    run: "mkdir -p out && cp src/a.txt out/a.txt"
    output: out/a.txt
  both:
    inputs: [src/a.txt, "src/b c.txt"]
    run: "mkdir -p out && cat src/a.txt 'src/b c.txt' > out/both.txt"
    output: out/both.txt
  gen:
    run: "mkdir -p gen && echo x > gen/x.txt && echo y > gen/y.txt"
    output: gen/
  page:
    needs: [copy]
    inputs: [out/a.txt]
    template: "page: {{ read('out/a.txt') }}"
    output: out/page.txt
  "true":
    needs: [gen, both]
    run: "cat gen/x.txt out/both.txt > out/true.txt"
    output: out/true.txt
"""
SOURCES = {"src/a.txt": "alpha\n", "src/b c.txt": "beta\n"}
OUTPUTS = ("out/a.txt", "out/both.txt", "gen/x.txt", "gen/y.txt", "out/page.txt", "out/true.txt")
LOCK = "orch.lock"
STAT_CACHE = ".orch/stat-cache.json"


@dataclass(frozen=True)
class Clean:
    """What a clean build leaves: the outputs' bytes and the lock's."""

    outputs: dict[str, bytes]
    lock: bytes


def truncated(data: bytes, rng: random.Random) -> bytes:
    """The bytes cut at a random offset (the whole file excluded)."""
    return data[: rng.randrange(len(data))]


def flipped(data: bytes, rng: random.Random) -> bytes:
    """The bytes with one random bit flipped."""
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def damaged(data: bytes, rng: random.Random) -> bytes:
    """Truncated or with one flipped bit, at random."""
    return truncated(data, rng) if rng.random() < 0.5 else flipped(data, rng)


def outputs(project: Project) -> dict[str, bytes]:
    """Each output's bytes; missing ones left out."""
    root = project.root
    return {path: (root / path).read_bytes() for path in OUTPUTS if (root / path).is_file()}


def age(project: Project) -> None:
    """Date every file a minute back, so that the stat cache remembers them at the next look."""
    past = time.time_ns() - 60 * 1_000_000_000
    for path in project.root.rglob("*"):
        if path.is_file() and ".orch" not in path.parts:
            os.utime(path, ns=(past, past))


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def set_up(project: Project) -> Clean:
    """Build the project cleanly, with every file remembered in the stat cache."""
    project.pipeline(PIPELINE)
    for path, text in SOURCES.items():
        project.write(path, text)
    ok(project.orch("build"))
    settle(project)
    return Clean(outputs(project), (project.root / LOCK).read_bytes())


def settle(project: Project) -> None:
    """A no-op build after dating every file back: a saved plan and a full stat cache."""
    age(project)
    assert ok(project.orch("build")).stdout.endswith("all 5 steps up to date\n")


def assert_refused_or_clean(project: Project, clean: Clean, build: Build, file: str) -> str:
    """The build was refused naming `file` (exit 2), or it equals a clean build; which one."""
    text = build.stdout + build.stderr
    assert "Traceback" not in text, text
    if build.exit_code == 2:
        assert file in text and "--force" in text, text
        return "refused"
    assert build.exit_code == 0, text
    assert outputs(project) == clean.outputs, text
    assert (project.root / LOCK).read_bytes() == clean.lock, text
    return "clean"


def restore(project: Project, clean: Clean) -> None:
    """Put back the clean lock and any output a trial changed, leaving unchanged files be."""
    (project.root / LOCK).write_bytes(clean.lock)
    for path, data in clean.outputs.items():
        file = project.root / path
        if not file.is_file() or file.read_bytes() != data:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)


def lock_trial(project: Project, clean: Clean, rng: random.Random) -> str:
    """Damage the lock while an output is missing (which a half-read entry would call up to
    date), build, and say whether the build was refused or equals a clean one."""
    restore(project, clean)
    (project.root / rng.choice(OUTPUTS)).unlink()
    (project.root / LOCK).write_bytes(damaged(clean.lock, rng))
    return assert_refused_or_clean(project, clean, project.orch("build"), LOCK)


def plan_trial(project: Project, clean: Clean, rng: random.Random) -> str:
    """Damage the saved plan and build: the plan is compiled afresh, as if never saved."""
    (plan,) = (project.root / ".orch" / "plans").glob("*.json")
    plan.write_bytes(damaged(plan.read_bytes(), rng))
    build = project.orch("build")
    assert build.exit_code == 0, build.stdout + build.stderr
    return assert_refused_or_clean(project, clean, build, "plans")


def stat_cache_trial(project: Project, clean: Clean, rng: random.Random) -> str:
    """Damage a full stat cache and build: every hash it held is recomputed or right."""
    settle(project)
    file = project.root / STAT_CACHE
    file.write_bytes(damaged(file.read_bytes(), rng))
    build = project.orch("build")
    assert build.exit_code == 0, build.stdout + build.stderr
    return assert_refused_or_clean(project, clean, build, STAT_CACHE)


def cache_trial(project: Project, clean: Clean, rng: random.Random) -> str:
    """Damage one action record or object of the cache, remove every output and the lock so
    that each step would be restored, and build: the damaged entry is a miss (its step runs
    again), never a wrong byte; which happened."""
    cache = project.root / ".orch" / "cache"
    entries = sorted(p for p in (cache / "actions").iterdir() if p.is_file())
    entries += sorted(p for p in (cache / "objects").rglob("*") if p.is_file())
    victim = rng.choice(entries)
    victim.write_bytes(damaged(victim.read_bytes(), rng))
    for path in OUTPUTS:
        (project.root / path).unlink(missing_ok=True)
    (project.root / LOCK).unlink()
    build = ok(project.orch("build"))
    assert_refused_or_clean(project, clean, build, "cache")
    return "ran again" if build.started() else "restored"


HISTORY_COMMANDS = (("runs",), ("show",), ("tail",), ("tail", "--type", "step.*"))


def history_trial(project: Project, clean: Clean, rng: random.Random) -> str:
    """Damage the last run's events or manifest and read it back with every history command:
    each ends with a message (exit 0, 1 or 2), never a traceback; the worst exit code."""
    (last,) = sorted(project.run_folders())[-1:]
    file = last / rng.choice(["events.jsonl", "manifest.json"])
    original = file.read_bytes()
    file.write_bytes(damaged(original, rng))
    codes = []
    for command in HISTORY_COMMANDS:
        result = project.orch(*command)
        assert result.exit_code in (0, 1, 2), (command, result.stdout + result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        codes.append(result.exit_code)
    file.write_bytes(original)
    return f"exit {max(codes)}"

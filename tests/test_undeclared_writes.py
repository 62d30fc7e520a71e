"""Undeclared writes: after each shell step, orch warns when an output of another step that is
done (ran, restored or up to date) changed, naming the writer and the owner; the next build
brings the owner back. Outputs of running steps, and of steps still to come, are theirs to
write and are never reported."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from .buildkit import Build, Project, snapshot

# `a` and `b` are independent, `a` first in plan order. `a` also writes `b`'s output: in a
# fresh build `b` runs after it and writes its own bytes, so nothing shows; once `b` is up to
# date, a rerun of `a` spoils `b`'s output.
SPOILER = """\
version: 1
steps:
  a:
    inputs: [src/a.txt]
    run: "cp src/a.txt out/a.txt && echo stray > out/b.txt; echo a >> runs.log"
    output: out/a.txt
  b:
    run: "echo b > out/b.txt; echo b >> runs.log"
    output: out/b.txt
"""

OWN_OUTPUTS = """\
version: 1
steps:
  gen:
    run: "mkdir -p gen && echo gen > gen/one.txt"
    output: gen/
  inner:
    run: "echo inner > gen/inner.txt"
    output: gen/inner.txt
    needs: [gen]
  x:
    run: "cat sync.fifo > /dev/null && echo x > out/x.txt"
    output: out/x.txt
    needs: [inner]
  y:
    run: "echo y > out/y.txt && echo go > sync.fifo"
    output: out/y.txt
    needs: [inner]
"""

ALONGSIDE = """\
version: 1
steps:
  b:
    run: "echo b > out/b.txt"
    output: out/b.txt
  x:
    run: "echo spoilt > out/b.txt && echo x > out/x.txt && echo go > sync.fifo"
    output: out/x.txt
    needs: [b]
  y:
    run: "cat sync.fifo > /dev/null && echo y > out/y.txt"
    output: out/y.txt
    needs: [b]
"""

REMOVES_AND_ADDS = """\
version: 1
steps:
  gen:
    run: "mkdir -p gen && echo gen > gen/one.txt"
    output: gen/
  b:
    run: "echo b > out/b.txt"
    output: out/b.txt
  a:
    run: "rm out/b.txt && echo extra > gen/extra.txt && echo a > out/a.txt"
    output: out/a.txt
    needs: [gen, b]
"""


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def undeclared(build: Build) -> list[dict[str, Any]]:
    return [{"step": e["step"], **e["data"]} for e in build.events("file.undeclared_write")]


def start(project: Project, pipeline: str) -> None:
    project.pipeline(pipeline)
    project.write("src/a.txt", "one\n")
    (project.root / "out").mkdir()


def outputs(root: Path) -> dict[str, str]:
    """The digest of every file under out/."""
    return {path: entry[3] for path, entry in snapshot(root / "out").items()}


def fresh_build(project: Project, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The same pipeline and sources built from scratch in `folder`."""
    shutil.copy(project.root / "orch.yaml", folder / "orch.yaml")
    shutil.copytree(project.root / "src", folder / "src")
    (folder / "out").mkdir()
    fresh = Project(folder)
    monkeypatch.chdir(folder)
    ok(fresh.orch("build", "-j", "1"))
    monkeypatch.chdir(project.root)
    return fresh


def test_a_step_that_overwrites_an_up_to_date_output_is_reported(project: Project) -> None:
    start(project, SPOILER)
    first = ok(project.orch("build", "-j", "1"))
    assert undeclared(first) == []  # `b` had not run yet: its output was not its own yet
    project.write("src/a.txt", "two\n")

    spoilt = ok(project.orch("build", "-j", "1"))

    assert spoilt.started() == ["a"]
    assert undeclared(spoilt) == [
        {"step": "a", "path": "out/b.txt", "owner": "b", "change": "modified", "alongside": []}
    ]
    [event] = spoilt.events("file.undeclared_write")
    assert event["level"] == "warning"
    assert (
        "warning   a  step 'a' changed 'out/b.txt', an output of step 'b';"
        " the next build brings it back"
    ) in spoilt.lines
    assert spoilt.statuses() == {"a": "ran", "b": "up-to-date"}


def test_the_next_build_brings_the_owner_back_as_a_fresh_build_makes_it(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(project, SPOILER)
    ok(project.orch("build", "-j", "1"))
    project.write("src/a.txt", "two\n")
    ok(project.orch("build", "-j", "1"))
    assert project.read("out/b.txt") == "stray\n"

    repaired = ok(project.orch("build", "-j", "1"))

    assert repaired.statuses() == {"a": "up-to-date", "b": "restored"}
    assert project.read("out/b.txt") == "b\n"
    (tmp_path / "fresh").mkdir()
    fresh = fresh_build(project, tmp_path / "fresh", monkeypatch)
    assert outputs(project.root) == outputs(fresh.root)
    assert project.lock() == fresh.lock()
    assert ok(project.orch("build")).unchanged


def test_the_owner_reruns_without_the_cache(project: Project) -> None:
    start(project, SPOILER)
    ok(project.orch("build", "-j", "1"))
    project.write("src/a.txt", "two\n")
    ok(project.orch("build", "-j", "1"))
    project.new_runs()

    ok(project.orch("build", "--no-cache"))

    assert project.new_runs() == ["b"]
    assert project.read("out/b.txt") == "b\n"


def test_steps_writing_their_own_outputs_side_by_side_are_not_reported(project: Project) -> None:
    project.pipeline(OWN_OUTPUTS)
    (project.root / "out").mkdir()
    os.mkfifo(project.root / "sync.fifo")  # x and y run at the same time

    build = ok(project.orch("build", "-j", "2"))

    assert undeclared(build) == []
    assert project.read("out/x.txt") == "x\n"
    assert project.read("gen/inner.txt") == "inner\n"  # inside gen/, which `gen` owns
    assert ok(project.orch("build")).unchanged


def test_a_write_while_another_step_ran_names_both(project: Project) -> None:
    project.pipeline(ALONGSIDE)
    (project.root / "out").mkdir()
    os.mkfifo(project.root / "sync.fifo")

    build = ok(project.orch("build", "-j", "2"))

    [found] = undeclared(build)
    assert (found["path"], found["owner"], found["change"]) == ("out/b.txt", "b", "modified")
    assert {found["step"], *found["alongside"]} == {"x", "y"}
    line = next(line for line in build.lines if "changed 'out/b.txt'" in line)
    assert "running at the same time" in line


def test_a_removed_output_and_a_file_added_to_an_output_folder_are_reported(
    project: Project,
) -> None:
    project.pipeline(REMOVES_AND_ADDS)
    (project.root / "out").mkdir()

    build = ok(project.orch("build", "-j", "1"))

    assert undeclared(build) == [
        {"step": "a", "path": "gen/extra.txt", "owner": "gen", "change": "added", "alongside": []},
        {"step": "a", "path": "out/b.txt", "owner": "b", "change": "removed", "alongside": []},
    ]
    assert "warning   a  step 'a' removed 'out/b.txt', an output of step 'b';" in "\n".join(
        build.lines
    )
    again = ok(project.orch("build"))
    assert again.statuses() == {"gen": "restored", "b": "restored", "a": "up-to-date"}
    assert not project.exists("gen/extra.txt")


def test_a_step_that_rewrites_the_same_bytes_or_only_touches_is_not_reported(
    project: Project,
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          b:
            run: "echo b > out/b.txt"
            output: out/b.txt
          a:
            run: "echo b > out/b.txt && touch out/b.txt && echo a > out/a.txt"
            output: out/a.txt
            needs: [b]
        """
    )
    (project.root / "out").mkdir()

    assert undeclared(ok(project.orch("build"))) == []


def test_changes_are_found_when_the_kernel_drops_events(project: Project) -> None:
    """More events than the kernel queues between two checks: every output is compared."""
    limit = Path("/proc/sys/fs/inotify/max_queued_events")
    if not limit.exists() or int(limit.read_text()) > 50_000:
        pytest.skip("needs Linux inotify with a queue of at most 50,000 events")
    files = int(limit.read_text())  # two events each: created, closed
    project.pipeline(
        f"""\
        version: 1
        steps:
          b:
            run: "echo b > out/b.txt"
            output: out/b.txt
          a:
            run: "i=0; while [ $i -lt {files} ]; do : > out/t$i; i=$((i+1)); done;
              rm -f out/t*; echo spoilt > out/b.txt; echo a > out/a.txt"
            output: out/a.txt
            needs: [b]
        """
    )
    (project.root / "out").mkdir()

    build = ok(project.orch("build"))

    assert [(e["step"], e["path"]) for e in undeclared(build)] == [("a", "out/b.txt")]

"""A `foreach` over the rows another step writes: one step per row, planned once that output is
written, each keyed on its own row; the build plans again in the same run when the output
changed, and a byte-identical output changes nothing downstream."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
)

from .buildkit import Build, Project

PIPELINE = """
version: 1
steps:
  architect:
    inputs: [design.json]
    output: build/plan.json
    run: mkdir -p build && cp design.json build/plan.json && echo architect >> runs.log
  builder:
    foreach: { rows: "{{ steps.architect.output }}", key: name }
    output: "out/{{ item.name }}.txt"
    run: >-
      echo {{ item.body | quote }} > {{ outputs[0] | quote }} && echo {{ item.name }} >> runs.log
  collect:
    needs: [builder]
    inputs: ["out/"]
    output: all.txt
    run: cat out/*.txt > all.txt && echo collect >> runs.log
"""


def design(project: Project, rows: dict[str, str]) -> None:
    project.write("design.json", json.dumps([{"name": k, "body": v} for k, v in rows.items()]))


def ran(project: Project) -> list[str]:
    return sorted(project.new_runs())


@pytest.fixture
def built(project: Project) -> Project:
    project.pipeline(PIPELINE)
    design(project, {"a": "alpha", "b": "beta"})
    first = project.orch("build")
    assert first.exit_code == 0, first.stdout + first.stderr
    assert ran(project) == ["a", "architect", "b", "collect"]
    return project


def replanned(build: Build) -> list[list[str]]:
    return [event["data"]["selected"] for event in build.events("job.replanned")]


def test_a_fresh_build_plans_the_rows_once_their_writer_ran(built: Project) -> None:
    assert built.read("all.txt") == "alpha\nbeta\n"
    assert built.read("out/a.txt") == "alpha\n"
    again = built.orch("build")
    assert again.stdout.endswith("all 4 steps up to date\n")
    assert ran(built) == []


def test_the_first_round_runs_the_writer_then_plans_the_rest(project: Project) -> None:
    project.pipeline(PIPELINE)
    design(project, {"a": "alpha"})
    status = project.orch("status")
    assert "expands     builder  (after 'architect')" in status.lines
    dry = project.orch("build", "--dry-run")
    assert "expands     builder  (after 'architect')" in dry.lines
    graph = project.orch("graph")
    assert "builder@*  <- architect (expands after them)" in graph.stdout
    first = project.orch("build")
    assert first.exit_code == 0
    assert replanned(first) == [["builder@a", "collect"]]
    assert first.statuses() == {"architect": "ran", "builder@a": "ran", "collect": "ran"}
    assert any("1 more step" in line or "2 more steps" in line for line in first.lines)


def test_naming_the_group_builds_its_writer_then_its_steps(project: Project) -> None:
    project.pipeline(PIPELINE)
    design(project, {"a": "alpha", "b": "beta"})
    result = project.orch("build", "builder")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert ran(project) == ["a", "architect", "b"], "collect is after the group, not in it"
    assert not project.exists("all.txt")


def test_a_step_that_needs_the_group_waits_for_it_to_be_planned(project: Project) -> None:
    project.pipeline(PIPELINE)
    design(project, {"a": "alpha", "b": "beta"})
    result = project.orch("build", "collect")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert ran(project) == ["a", "architect", "b", "collect"]
    assert project.read("all.txt") == "alpha\nbeta\n", "as a full build leaves it"


def test_a_target_before_the_group_does_not_plan_it(project: Project) -> None:
    project.pipeline(PIPELINE)
    design(project, {"a": "alpha"})
    result = project.orch("build", "architect")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert ran(project) == ["architect"]
    assert replanned(result) == []


def test_no_rows_fail_a_step_reading_the_group_unless_its_input_is_optional(
    project: Project,
) -> None:
    project.pipeline(PIPELINE)
    project.write("design.json", "[]")
    failed = project.orch("build")
    assert failed.exit_code == 1
    assert (
        "step 'collect': input 'out/' does not exist and no step produces it (the group 'builder'"
        " it needs gives no steps; mark the input `optional: true` if that can happen)"
        in failed.stdout
    )
    optional = PIPELINE.replace('inputs: ["out/"]', 'inputs: [{path: "out/", optional: true}]')
    project.pipeline(optional.replace("cat out/*.txt", "cat out/*.txt 2>/dev/null || true"))
    assert project.orch("build").exit_code == 0
    assert project.read("all.txt") == ""


def test_a_new_row_runs_one_new_step_and_a_removed_row_leaves_the_others(built: Project) -> None:
    design(built, {"a": "alpha", "b": "beta", "c": "gamma"})
    grown = built.orch("build")
    assert grown.exit_code == 0, grown.stdout
    assert ran(built) == ["architect", "c", "collect"]
    assert built.read("all.txt") == "alpha\nbeta\ngamma\n"
    # a and b were planned from the old rows: they wait for the new plan, which finds them
    # up to date and adds c
    assert replanned(grown) == [["builder@a", "builder@b", "builder@c", "collect"]]
    assert grown.statuses() == {
        "architect": "ran",
        "builder@a": "up-to-date",
        "builder@b": "up-to-date",
        "builder@c": "ran",
        "collect": "ran",
    }

    design(built, {"a": "alpha", "c": "gamma"})
    shrunk = built.orch("build")
    assert shrunk.exit_code == 0
    assert ran(built) == ["architect", "collect"]
    assert not built.exists("out/b.txt"), "a fresh build would not have it"
    assert built.read("all.txt") == "alpha\ngamma\n"
    removed = shrunk.events("file.removed", "builder@b")
    assert [e["data"]["reason"] for e in removed] == ["no step declares it"]


def test_a_changed_row_reruns_only_its_step(built: Project) -> None:
    design(built, {"a": "alpha", "b": "BETA"})
    changed = built.orch("build")
    assert changed.exit_code == 0
    assert ran(built) == ["architect", "b", "collect"]
    assert built.read("all.txt") == "alpha\nBETA\n"


def test_a_byte_identical_output_changes_nothing_after_it(built: Project) -> None:
    built.write("design.json", built.read("design.json"))  # same bytes, new mtime
    built.pipeline(PIPELINE.replace("echo architect", "echo 'architect'"))  # architect reruns
    same = built.orch("build")
    assert same.exit_code == 0
    assert ran(built) == ["architect"]
    assert replanned(same) == []


def test_the_rows_file_absent_after_a_failed_writer_plans_nothing_more(project: Project) -> None:
    project.pipeline(PIPELINE.replace("cp design.json", "false && cp design.json"))
    design(project, {"a": "alpha"})
    failed = project.orch("build")
    assert failed.exit_code == 1
    assert replanned(failed) == []
    assert not project.exists("out")


def test_files_of_a_deleted_step_go_unless_edited_by_hand(project: Project) -> None:
    project.pipeline(
        """
        version: 1
        steps:
          a: { output: a.txt, run: echo a > a.txt }
          b: { output: b.txt, run: echo b > b.txt }
          c: { output: c.txt, run: echo c > c.txt }
        """
    )
    assert project.orch("build").exit_code == 0
    project.write("c.txt", "my notes\n")
    project.pipeline(
        """
        version: 1
        steps:
          a: { output: a.txt, run: echo a > a.txt }
        """
    )
    after = project.orch("build")
    assert after.exit_code == 0
    assert not project.exists("b.txt")
    assert project.read("c.txt") == "my notes\n", "a hand edit is never removed"
    assert project.read("a.txt") == "a\n"


def test_an_output_renamed_leaves_no_old_file(project: Project) -> None:
    project.pipeline("version: 1\nsteps:\n  a: { output: old.txt, run: echo a > old.txt }\n")
    assert project.orch("build").exit_code == 0
    project.pipeline("version: 1\nsteps:\n  a: { output: new.txt, run: echo a > new.txt }\n")
    renamed = project.orch("build")
    assert renamed.exit_code == 0
    assert not project.exists("old.txt"), "a fresh build would not have it"
    assert project.read("new.txt") == "a\n"


def test_rows_a_step_writes_that_cannot_be_planned_fail_the_build_not_the_pipeline(
    project: Project,
) -> None:
    project.pipeline(
        PIPELINE.replace("cp design.json build/plan.json", "echo '[1' > build/plan.json")
    )
    design(project, {"a": "alpha"})
    assert project.orch("validate").exit_code == 0
    failed = project.orch("build")
    assert failed.exit_code == 1, "the pipeline as written is valid: a failed build, not exit 2"
    [event] = failed.events("plan.failed")
    assert "build/plan.json" in event["data"]["message"]
    assert "invalid JSON" in event["data"]["message"]
    assert any(line.startswith("ERROR") for line in failed.lines)
    assert failed.statuses()["architect"] == "ran"
    # the bad file stays: the pipeline is still valid, and a fixed writer recovers
    assert project.orch("validate").exit_code == 0
    assert "expands     builder  (after 'architect')" in project.orch("status").lines
    project.pipeline(PIPELINE)
    fixed = project.orch("build")
    assert fixed.exit_code == 0, fixed.stdout
    assert project.read("all.txt") == "alpha\n"


# ---------------------------------------------------------------------------- model-based

ROWS = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["x", "y", "z"]), min_size=1, max_size=4
)


class DynamicRows(RuleBasedStateMachine):
    """Random edits of the rows an upstream step writes. After every build: the workdir holds
    what a fresh build of the same design gives (no file of a row gone), and only the steps of
    new or changed rows ran, with the writer when the design changed and `collect` when the
    files it reads changed."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="orch-rows-"))
        self.project = Project(self.folder)
        self.rows: dict[str, str] = {}
        self.built: dict[str, str] = {}
        self.design_built = ""

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @initialize(rows=ROWS)
    def start(self, rows: dict[str, str]) -> None:
        self.project.pipeline(PIPELINE)
        self.rows = rows
        self._build()

    @rule(rows=ROWS)
    def edit(self, rows: dict[str, str]) -> None:
        self.rows = rows

    @rule()
    def rewrite_the_same_bytes(self) -> None:
        design(self.project, self.rows)

    @rule()
    def build(self) -> None:
        self._build()

    def _build(self) -> None:
        design(self.project, self.rows)
        with _inside(self.folder):
            done = self.project.orch("build")
        assert done.exit_code == 0, done.stdout + done.stderr
        expected = {name for name, body in self.rows.items() if self.built.get(name) != body}
        started = {s.removeprefix("builder@") for s in done.started() if s.startswith("builder@")}
        assert started == expected, (started, expected)
        assert _files(self.folder) == _fresh(self.rows)
        self.built = dict(self.rows)


def _files(root: Path) -> dict[str, str]:
    """The files a build leaves: its outputs and sources (not orch's own state)."""
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and path.name not in ("runs.log", "orch.lock")
        and ".orch" not in path.relative_to(root).parts
    }


def _fresh(rows: dict[str, str]) -> dict[str, str]:
    """What a build of `rows` in a new empty folder leaves."""
    with tempfile.TemporaryDirectory(prefix="orch-fresh-") as tmp:
        project = Project(Path(tmp))
        project.pipeline(PIPELINE)
        design(project, rows)
        with _inside(Path(tmp)):
            assert project.orch("build").exit_code == 0
        return _files(Path(tmp))


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


DynamicRows.TestCase.settings = settings(
    max_examples=int(os.environ.get("ORCH_MODEL_EXAMPLES", "15")),
    stateful_step_count=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDynamicRows = pytest.mark.slow(DynamicRows.TestCase)

"""`--json` on build, validate and graph: the outcome as one JSON document on stdout, for
scripts, with the usual exit codes."""

from __future__ import annotations

import json

from .buildkit import Project

CHAIN = """\
version: 1
steps:
  first:
    output: first.txt
    run: echo one > first.txt
  second:
    inputs: [first.txt]
    output: second.txt
    run: cp first.txt second.txt
"""


def test_build_json_says_each_steps_status_and_the_run_folder(project: Project) -> None:
    project.pipeline(CHAIN)
    built = project.orch("build", "--json")
    assert built.exit_code == 0, built.stdout + built.stderr
    outcome = json.loads(built.stdout)
    assert outcome["status"] == "succeeded"
    assert outcome["steps"] == {"first": "ran", "second": "ran"}
    assert outcome["counts"] == {"ran": 2}
    assert outcome["run_folder"] == str(built.run)
    assert outcome["failures"] == [] and outcome["warnings"] == []

    again = json.loads(project.orch("build", "--json").stdout)
    assert again["steps"] == {"first": "up-to-date", "second": "up-to-date"}
    assert again["run_folder"] is None, "a build that changed nothing has no run folder"


def test_build_json_of_a_failed_build_exits_1_with_its_failures(project: Project) -> None:
    project.pipeline(CHAIN.replace("echo one > first.txt", "exit 3"))
    failed = project.orch("build", "--json")
    assert failed.exit_code == 1
    outcome = json.loads(failed.stdout)
    assert outcome["status"] == "failed"
    assert outcome["steps"] == {"first": "failed", "second": "blocked"}
    (failure,) = outcome["failures"]
    assert (failure["step"], failure["kind"]) == ("first", "exit")


def test_a_dry_run_in_json_lists_what_would_change(project: Project) -> None:
    project.pipeline(CHAIN)
    dry = project.orch("build", "-n", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "steps": [
            {"step": "first", "action": "run", "reasons": ["never built"]},
            {"step": "second", "action": "run", "reasons": ["never built"]},
        ],
        "would_change": 2,
    }
    assert not project.exists("first.txt")


def test_validate_json_gives_each_pipeline_its_errors_with_their_place(project: Project) -> None:
    project.pipeline(CHAIN)
    project.write("broken.yaml", 'version: 1\nsteps:\n  a:\n    run: "true"\n    outputs: x\n')
    checked = project.orch("validate", "--json", "orch.yaml", "broken.yaml")
    assert checked.exit_code == 2
    assert checked.stderr == ""
    good, bad = json.loads(checked.stdout)
    assert good == {
        "pipeline": "orch.yaml",
        "valid": True,
        "steps": 2,
        "warnings": [],
        "errors": [],
    }
    assert (bad["pipeline"], bad["valid"], bad["steps"]) == ("broken.yaml", False, None)
    (error,) = bad["errors"]
    assert (error["file"], error["line"], error["col"]) == ("broken.yaml", 5, 14)
    assert error["message"] == "step 'a', field 'outputs': input should be a valid list"


def test_graph_json_lists_the_steps_in_order_with_what_they_need(project: Project) -> None:
    project.pipeline(CHAIN)
    drawn = project.orch("graph", "--json")
    assert drawn.exit_code == 0, drawn.stderr
    assert json.loads(drawn.stdout) == {
        "pipeline": "orch",
        "steps": [
            {"id": "first", "kind": "shell", "needs": []},
            {"id": "second", "kind": "shell", "needs": ["first"]},
        ],
        "later": [],
    }
    assert project.orch("graph", "--format", "json").stdout == drawn.stdout

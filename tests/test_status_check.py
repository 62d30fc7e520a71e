"""`orch status --check` with always_run steps: it lists them, but fails only for work that is
due for another reason (an edited input or output, a missing file, a changed definition).

The pipeline: `fetch` is always_run and reads `src.txt`; `use` reads what `fetch` writes;
`other` stands apart and reads `other.txt`.
"""

from __future__ import annotations

import json
from typing import Any

from .buildkit import Build, Project

PIPELINE = """\
    version: 1
    steps:
      fetch:
        always_run: true
        inputs: [src.txt]
        run: "echo fetch >> runs.log && cp src.txt fetched.txt"
        output: fetched.txt
      use:
        inputs: [fetched.txt]
        run: "echo use >> runs.log && cp fetched.txt used.txt"
        output: used.txt
      other:
        inputs: [other.txt]
        run: "echo other >> runs.log && cp other.txt other.out"
        output: other.out
"""


def built(project: Project) -> Project:
    project.pipeline(PIPELINE)
    project.write("src.txt", "source\n")
    project.write("other.txt", "other\n")
    done = project.orch("build")
    assert done.exit_code == 0, done.stdout + done.stderr
    project.new_runs()
    return project


def check(project: Project, *args: str) -> Build:
    return project.orch("status", "--check", *args)


def check_json(project: Project) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(check(project, "--json").stdout)
    return data


def stale(data: dict[str, Any]) -> dict[str, bool]:
    return {step["step"]: step["stale"] for step in data["steps"]}


def test_always_run_alone_does_not_fail_the_check_but_is_listed(project: Project) -> None:
    built(project)
    result = check(project)
    assert result.exit_code == 0
    assert result.lines == [
        "run         fetch  (always_run)",
        "run         use  (upstream will change)",
        "up-to-date  other",
        "up to date; 2 of 3 steps would run only because of always_run",
    ]
    assert project.new_runs() == [], "status runs nothing"


def test_json_says_up_to_date_and_marks_no_step_stale(project: Project) -> None:
    built(project)
    data = check_json(project)
    assert data["up_to_date"] is True
    assert data["steps"][0] == {
        "step": "fetch",
        "action": "run",
        "reasons": ["always_run"],
        "stale": False,
    }
    assert stale(data) == {"fetch": False, "use": False, "other": False}


def test_an_edited_input_of_another_step_fails_the_check(project: Project) -> None:
    built(project)
    project.write("other.txt", "edited\n")
    result = check(project)
    assert result.exit_code == 1
    assert "run         other  (input modified: other.txt)" in result.lines
    assert "run         fetch  (always_run)" in result.lines
    data = check_json(project)
    assert data["up_to_date"] is False
    assert stale(data) == {"fetch": False, "use": False, "other": True}


def test_an_edited_input_of_the_always_run_step_fails_the_check(project: Project) -> None:
    built(project)
    project.write("src.txt", "new source\n")
    result = check(project)
    assert result.exit_code == 1
    assert result.lines[0] == "run         fetch  (always_run; input modified: src.txt)"
    data = check_json(project)
    assert data["up_to_date"] is False
    assert stale(data) == {"fetch": True, "use": True, "other": False}


def test_a_step_after_always_run_with_its_own_change_fails_the_check(project: Project) -> None:
    built(project)
    project.write("used.txt", "hand edit\n")
    result = check(project)
    assert result.exit_code == 1
    assert "run         use  (output modified: used.txt; upstream will change)" in result.lines
    assert stale(check_json(project)) == {"fetch": False, "use": True, "other": False}


def test_a_missing_output_of_the_always_run_step_fails_the_check(project: Project) -> None:
    built(project)
    (project.root / "fetched.txt").unlink()
    result = check(project)
    assert result.exit_code == 1
    assert result.lines[0] == "run         fetch  (always_run; output missing: fetched.txt)"
    assert stale(check_json(project))["fetch"] is True


def test_a_never_built_pipeline_fails_the_check(project: Project) -> None:
    project.pipeline(PIPELINE)
    project.write("src.txt", "source\n")
    project.write("other.txt", "other\n")
    assert check(project).exit_code == 1
    assert stale(check_json(project)) == {"fetch": True, "use": True, "other": True}


def test_the_check_passes_again_after_a_build(project: Project) -> None:
    built(project)
    project.write("other.txt", "edited\n")
    assert check(project).exit_code == 1
    assert project.orch("build").exit_code == 0
    # fetch wrote the same bytes again, so use did not run: "upstream will change" was a guess
    assert sorted(project.new_runs()) == ["fetch", "other"]
    assert check(project).exit_code == 0


def test_targets_limit_the_check(project: Project) -> None:
    built(project)
    project.write("other.txt", "edited\n")
    assert check(project, "orch.yaml", "use").exit_code == 0
    assert check(project, "orch.yaml", "other").exit_code == 1


def test_without_always_run_steps_everything_listed_counts(project: Project) -> None:
    project.pipeline(PIPELINE.replace("always_run: true", "always_run: false"))
    project.write("src.txt", "source\n")
    project.write("other.txt", "other\n")
    assert project.orch("build").exit_code == 0
    clean = check(project)
    assert (clean.exit_code, clean.lines[-1]) == (0, "all 3 steps up to date")
    assert stale(check_json(project)) == {"fetch": False, "use": False, "other": False}

"""Conditions (`if`), opt-in steps (`default: false`) and building by output path, end to end.

Every step appends its name to `runs.log` when its command runs, so each test knows exactly
which commands ran.
"""

from __future__ import annotations

import json

import pytest

from .buildkit import Project

LANGS = """\
version: 1
vars:
  with_summary: false
steps:
  page:
    foreach: [en, de, fr]
    if: "{{ item != 'de' }}"
    run: echo {{ item }} >> runs.log; echo {{ item }} > page-{{ item }}.txt
    output: page-{{ item }}.txt
  summary:
    if: "{{ with_summary }}"
    needs: [page]
    run: echo summary >> runs.log; cat page-*.txt > summary.txt
    output: summary.txt
  index:
    needs: [page]
    run: echo index >> runs.log; ls page-*.txt > index.txt
    output: index.txt
"""


def test_a_false_condition_removes_the_step_and_status_says_why(project: Project) -> None:
    project.pipeline(LANGS)
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0, result.stderr
    assert sorted(project.new_runs()) == ["en", "fr", "index"]
    assert not project.exists("summary.txt")
    assert not project.exists("page-de.txt")
    assert project.read("index.txt").split() == ["page-en.txt", "page-fr.txt"]
    assert "summary" not in result.statuses()

    status = project.orch("status")
    assert status.exit_code == 0
    assert "skipped     page@de  (if: {{ item != 'de' }} is false)" in status.lines
    assert "skipped     summary  (if: {{ with_summary }} is false)" in status.lines
    assert "all 3 steps up to date" in status.lines

    data = json.loads(project.orch("status", "--json").stdout)
    assert data["up_to_date"] is True
    assert {step["step"] for step in data["steps"]} == {"page@en", "page@fr", "index"}
    assert data["removed"] == [
        {"step": "page@de", "reason": "if: {{ item != 'de' }} is false"},
        {"step": "summary", "reason": "if: {{ with_summary }} is false"},
    ]


def test_toggling_a_var_flips_which_steps_exist_and_runs_only_them(project: Project) -> None:
    project.pipeline(LANGS)
    assert project.orch("build").exit_code == 0
    project.new_runs()

    on = project.orch("build", "--set", "with_summary=true")
    assert on.exit_code == 0, on.stderr
    assert project.new_runs() == ["summary"]
    assert project.read("summary.txt") == "en\nfr\n"

    off = project.orch("build", "--set", "with_summary=false")
    assert off.exit_code == 0
    assert project.new_runs() == []
    assert off.lines[-1] == "all 3 steps up to date"


def test_a_condition_on_the_environment_is_seen_through_the_saved_plan(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          always:
            run: echo always >> runs.log; echo a > a.txt
            output: a.txt
          extra:
            if: "{{ env.WITH_EXTRA | default('no') }}"
            run: echo extra >> runs.log; echo e > e.txt
            output: e.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["always"]
    assert project.orch("build").lines == ["all 1 step up to date"]  # the saved plan

    monkeypatch.setenv("WITH_EXTRA", "yes")
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["extra"]

    monkeypatch.setenv("WITH_EXTRA", "no")
    status = project.orch("status")
    assert "skipped     extra  (if: {{ env.WITH_EXTRA | default('no') }} is false)" in status.lines
    assert project.orch("status").lines == status.lines  # from the saved plan, the same


def test_when_every_step_is_removed_orch_says_so(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          only:
            if: false
            run: echo only >> runs.log
        """
    )
    result = project.orch("build")
    assert result.exit_code == 0
    assert (
        "orch.yaml:4:9: warning: every step is removed by its condition ('if'),"
        " so there is nothing to build"
    ) in result.stderr
    assert project.new_runs() == []


def test_a_removed_step_cannot_be_a_target(project: Project) -> None:
    project.pipeline(LANGS)
    result = project.orch("build", "summary")
    assert result.exit_code == 2
    assert (
        "step 'summary' is not in the plan: it is removed by its condition"
        " (if: {{ with_summary }} is false)"
    ) in result.stderr
    assert result.run is None
    assert project.new_runs() == []


# --------------------------------------------------------------------------- invalid conditions

INVALID = {
    "undefined": (
        'if: "{{ nope }}"',
        "step 'x', field 'if': undefined variable 'nope'",
    ),
    "syntax": (
        'if: "{{ 1 + }}"',
        "step 'x', field 'if': template syntax error",
    ),
    "not boolean-like": (
        'if: "{{ mode }}"',
        "step 'x', field 'if': gives 'fast', which is neither true nor false",
    ),
    "steps": (
        'if: "{{ steps.y.outputs }}"',
        "step 'x', field 'if': 'steps' cannot be used here: a condition decides which steps exist",
    ),
    "read": (
        "if: \"{{ read('a.txt') == '' }}\"",
        "step 'x', field 'if': 'read' cannot be used here",
    ),
}


@pytest.mark.parametrize(("condition", "message"), INVALID.values(), ids=INVALID.keys())
def test_a_condition_that_does_not_give_true_or_false_is_an_error_at_the_if(
    project: Project, condition: str, message: str
) -> None:
    project.write("a.txt", "a\n")
    project.pipeline(
        f"""\
        version: 1
        vars:
          mode: fast
        steps:
          x:
            {condition}
            run: echo x >> runs.log
          y:
            run: echo y >> runs.log; echo y > y.txt
            output: y.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 2
    assert f"orch.yaml:6:9: {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.run is None
    assert not project.exists(".orch")
    assert project.new_runs() == []


def test_needing_a_removed_step_is_an_error_naming_the_condition(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          a:
            if: false
            run: echo a >> runs.log
          b:
            needs: [a]
            run: echo b >> runs.log
        """
    )
    result = project.orch("build")
    assert result.exit_code == 2
    assert (
        "orch.yaml:7:13: step 'b' needs step 'a', which is removed by its condition (if: false)"
    ) in result.stderr
    assert not project.exists(".orch")


def test_the_outputs_of_a_removed_step_are_an_error(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          a:
            if: false
            run: echo a > a.txt
            output: a.txt
          b:
            inputs: ["{{ steps.a.output }}"]
            run: cat a.txt > b.txt
            output: b.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 2
    assert "orch.yaml:8:14: step 'b', field 'inputs[0]'" in result.stderr
    assert "step 'a' is removed by its condition (if: false)" in result.stderr


def test_an_input_a_removed_step_would_write_is_an_ordinary_source_file(project: Project) -> None:
    project.write("a.txt", "by hand\n")
    project.pipeline(
        """\
        version: 1
        steps:
          a:
            if: false
            run: echo a >> runs.log; echo generated > a.txt
            output: a.txt
          b:
            inputs: [a.txt]
            run: echo b >> runs.log; cat a.txt > b.txt
            output: b.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["b"]
    assert project.read("b.txt") == "by hand\n"


# --------------------------------------------------------------------------- default: false

OPT_IN = """\
version: 1
steps:
  app:
    run: echo app >> runs.log; echo app > app.txt
    output: app.txt
  docs:
    default: false
    run: echo docs >> runs.log; echo docs > docs.txt
    output: docs.txt
  fixtures:
    default: false
    run: echo fixtures >> runs.log; echo f > fixtures.txt
    output: fixtures.txt
  tests:
    inputs: [fixtures.txt]
    run: echo tests >> runs.log; cat fixtures.txt > tests.txt
    output: tests.txt
"""


def test_an_opt_in_step_is_built_only_when_asked_for(project: Project) -> None:
    project.pipeline(OPT_IN)
    dry = project.orch("build", "--dry-run")
    assert "dry run: 3 of 3 steps would change" in dry.lines
    assert "docs" not in dry.stdout

    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ["app", "fixtures", "tests"]  # tests needs fixtures
    assert not project.exists("docs.txt")
    check = project.orch("status", "--check")
    assert check.lines[-1] == "all 3 steps up to date"
    assert "docs" not in check.stdout

    docs = project.orch("build", "docs")
    assert docs.exit_code == 0
    assert project.new_runs() == ["docs"]
    assert project.read("docs.txt") == "docs\n"
    assert project.orch("status", "docs").lines == ["up-to-date  docs", "all 1 steps up to date"]


def test_an_opt_in_step_stays_opt_in_through_the_saved_plan(project: Project) -> None:
    project.pipeline(OPT_IN)
    assert project.orch("build").exit_code == 0
    project.new_runs()
    again = project.orch("build")
    assert again.lines == ["all 3 steps up to date"]
    assert project.orch("build", "docs").exit_code == 0
    assert project.new_runs() == ["docs"]


# --------------------------------------------------------------------------- targets by path

PATHS = """\
version: 1
steps:
  site:
    run: echo site >> runs.log; mkdir -p build/site; echo hi > build/site/index.html
    output: build/site/
  report:
    run: echo report >> runs.log; mkdir -p build; echo r > build/report.txt
    output: build/report.txt
  config:
    run: echo config >> runs.log; mkdir -p gen; echo a=1 > gen/config.yaml
    output: gen/config.yaml
"""


def test_building_an_output_path_builds_the_step_that_writes_it(project: Project) -> None:
    project.pipeline(PATHS)
    result = project.orch("build", "build/report.txt")
    assert result.exit_code == 0, result.stderr
    assert result.lines[0] == "building step 'report' (it writes build/report.txt)"
    assert project.new_runs() == ["report"]

    again = project.orch("build", "./build//report.txt")  # built now, and written loosely
    assert again.lines == [
        "building step 'report' (it writes build/report.txt)",
        "all 1 step up to date",
    ]

    inside = project.orch("build", "build/site/index.html")
    assert inside.lines[0] == "building step 'site' (it writes build/site/)"
    assert project.new_runs() == ["site"]

    yaml_output = project.orch("build", "gen/config.yaml")
    assert yaml_output.lines[0] == "building step 'config' (it writes gen/config.yaml)"
    assert project.new_runs() == ["config"]
    assert project.orch("build", "gen/config.yaml").lines[-1] == "all 1 step up to date"


def test_a_pipeline_argument_still_comes_first(project: Project) -> None:
    project.pipeline(PATHS)
    project.write("other/p.yaml", "version: 1\nsteps:\n  o:\n    run: echo o >> runs.log\n")
    assert project.orch("build", "other/p.yaml").exit_code == 0
    assert project.read("other/runs.log") == "o\n"  # its workdir is its folder
    assert project.orch("build", "orch.yaml", "report").exit_code == 0
    assert project.new_runs() == ["report"]
    assert project.orch("build", "orch.yaml", "build/site/").exit_code == 0
    assert project.new_runs() == ["site"]


def test_a_pipeline_in_flow_style_or_named_by_its_full_path_is_still_the_pipeline(
    project: Project,
) -> None:
    project.pipeline(PATHS)
    flow = '{"version": 1, "steps": {"o": {"run": "echo o >> runs.log"}}}\n'
    project.write("other/p.yaml", flow)
    assert project.orch("build", "other/p.yaml").exit_code == 0
    assert project.read("other/runs.log") == "o\n"
    assert project.orch("status", str(project.root / "orch.yaml")).exit_code == 0


def test_an_unknown_target_is_a_usage_error_with_a_suggestion(project: Project) -> None:
    project.pipeline(PATHS)
    result = project.orch("build", "build/reprot.txt")
    assert result.exit_code == 2
    assert (
        "no step named 'build/reprot.txt' (nor a foreach group, a declared output or a"
        " pipeline file); did you mean 'build/report.txt'?"
    ) in result.stderr
    assert result.run is None
    assert project.new_runs() == []
    missing = project.orch("build", "missing.yaml")
    assert missing.exit_code == 2
    assert "no step named 'missing.yaml'" in missing.stderr

"""Vars from values files (YAML, JSON, TOML): merging, `--set` inside a var, errors, and keys
that take only the values a step uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .buildkit import Project

PIPELINE = """\
version: 1
vars:
  - params.yaml
  - tag: "t{{ train.n_est }}"
steps:
  fit:
    run: echo fit >> runs.log; echo {{ train.n_est }} {{ tag }} > fit.txt
    output: fit.txt
  rate:
    run: echo rate >> runs.log; echo {{ vars.train['lr'] }} > rate.txt
    output: rate.txt
  plain:
    run: echo plain >> runs.log; echo plain > plain.txt
    output: plain.txt
"""

PARAMS = """\
train:
  n_est: 10
  lr: 0.1
seed: 3
"""


@pytest.fixture
def built(project: Project) -> Project:
    """The pipeline above, built once."""
    project.pipeline(PIPELINE)
    project.write("params.yaml", PARAMS)
    assert project.orch("build").exit_code == 0
    assert sorted(project.new_runs()) == ["fit", "plain", "rate"]
    return project


def _plan_bytes(project: Project) -> bytes:
    (plan,) = (project.root / ".orch" / "plans").glob("*.json")
    return plan.read_bytes()


# --------------------------------------------------------------------------- loading


def test_a_values_file_gives_vars_by_name_and_under_vars(built: Project) -> None:
    assert built.read("fit.txt") == "10 t10\n"
    assert built.read("rate.txt") == "0.1\n"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("params.toml", "seed = 3\n[train]\nn_est = 7\nlr = 0.5\n"),
        ("params.json", '{"train": {"n_est": 7, "lr": 0.5}, "seed": 3}\n'),
    ],
)
def test_toml_and_json_files_load(project: Project, name: str, text: str) -> None:
    project.pipeline(PIPELINE.replace("params.yaml", name))
    project.write(name, text)
    assert project.orch("build").exit_code == 0
    assert project.read("fit.txt") == "7 t7\n"
    assert project.read("rate.txt") == "0.5\n"


def test_later_entries_merge_into_earlier_ones_at_every_depth(project: Project) -> None:
    project.pipeline("""\
        version: 1
        vars:
          - base.yaml
          - more.json
          - train: {opt: {lr: "{{ seed * 2 }}"}}
        steps:
          show:
            run: echo '{{ train | tojson }} {{ seed }}' > show.txt
            output: show.txt
        """)
    project.write("base.yaml", "seed: 1\ntrain: {n_est: 5, opt: {lr: 1, momentum: 0.9}}\n")
    project.write("more.json", '{"seed": 4}')
    assert project.orch("build").exit_code == 0
    shown = '{"n_est": 5, "opt": {"lr": 8, "momentum": 0.9}} 4\n'
    assert project.read("show.txt") == shown


def test_a_plain_vars_mapping_works_as_before(project: Project) -> None:
    project.pipeline("""\
        version: 1
        vars: {app: notes, out: "gen/{{ app }}"}
        steps:
          show:
            run: echo {{ out }} > show.txt
            output: show.txt
        """)
    assert project.orch("build").exit_code == 0
    assert project.read("show.txt") == "gen/notes\n"


# --------------------------------------------------------------------------- --set


def test_set_replaces_a_value_inside_a_var_and_later_vars_see_it(built: Project) -> None:
    assert built.orch("build", "--set", "train.n_est=42").exit_code == 0
    assert built.read("fit.txt") == "42 t42\n"
    assert built.read("rate.txt") == "0.1\n"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.n_et=1", "--set train.n_et: 'train' has no key 'n_et'; did you mean 'n_est'?"),
        ("trian.lr=1", "--set trian.lr: no var 'trian'; did you mean 'train'?"),
        ("seed.x=1", "--set seed.x: 'seed' is a int, not a mapping"),
    ],
)
def test_set_of_a_value_a_var_does_not_have_is_refused(
    built: Project, setting: str, message: str
) -> None:
    result = built.orch("build", "--set", setting)
    assert result.exit_code == 2
    assert message in result.stderr
    assert built.new_runs() == []


# --------------------------------------------------------------------------- errors


def _refused(project: Project, where: str, message: str) -> None:
    before = sorted(os.listdir(project.root))
    result = project.orch("build")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.split(": ")[0].endswith(where), first
    assert message in first, first
    assert sorted(os.listdir(project.root)) == before, "nothing is written"


def test_a_missing_values_file_is_refused_at_its_entry(project: Project) -> None:
    project.pipeline(PIPELINE)
    _refused(project, "orch.yaml:3:5", "values file 'params.yaml' not found")


@pytest.mark.parametrize(
    ("name", "text", "where", "message"),
    [
        ("params.yaml", "train:\n  n_est: [1\n", "params.yaml:3:1", "invalid YAML: expected ','"),
        ("params.json", '{"train":\n  {"n_est": }}', "params.json:2:13", "invalid JSON"),
        ("params.toml", "[train]\nn_est = \n", "params.toml:2:9", "invalid TOML: Invalid value"),
        ("params.yaml", "- 1\n- 2\n", "params.yaml:1:1", "must hold a mapping of var names"),
        ("params.yaml", "seed: 1\n2x: 1\n", "params.yaml:2:1", "invalid var name '2x'"),
        ("params.json", '{"seed": 1,\n "a-b": 2}', "params.json:2:2", "invalid var name 'a-b'"),
        ("params.toml", "seed = 1\n[steps]\nx = 1\n", "params.toml:2:1", "reserved name"),
    ],
)
def test_an_invalid_values_file_is_refused_where_the_problem_is(
    project: Project, name: str, text: str, where: str, message: str
) -> None:
    project.pipeline(PIPELINE.replace("params.yaml", name))
    project.write(name, text)
    _refused(project, where, message)


def test_a_values_file_of_an_unknown_format_is_refused(project: Project) -> None:
    project.pipeline(PIPELINE.replace("params.yaml", "params.ini"))
    project.write("params.ini", "[train]\n")
    _refused(project, "orch.yaml:3:5", "unknown format; name it .yaml, .yml, .json or .toml")


def test_a_vars_entry_that_is_neither_a_file_nor_a_mapping_is_refused(project: Project) -> None:
    project.pipeline(PIPELINE.replace("- params.yaml", "- 5"))
    _refused(project, "orch.yaml:3:5", "field 'vars[0]'")


# --------------------------------------------------------------------------- saved plans


def test_editing_a_values_file_invalidates_the_saved_plan(built: Project) -> None:
    built.write("params.yaml", PARAMS.replace("n_est: 10", "n_est: 11"))
    assert built.orch("build").exit_code == 0
    assert built.read("fit.txt") == "11 t11\n"


def test_a_values_file_outside_the_pipeline_folder_is_refused(project: Project) -> None:
    project.pipeline(PIPELINE.replace("params.yaml", "../params.yaml"))
    _refused(project, "orch.yaml:3:5", "escapes the workdir")


def test_values_files_are_read_relative_to_the_workdir(project: Project, tmp_path: Path) -> None:
    project.pipeline(PIPELINE.replace("version: 1", "version: 1\nworkdir: sub"))
    project.write("sub/params.yaml", PARAMS)
    assert project.orch("build").exit_code == 0
    assert project.read("sub/fit.txt") == "10 t10\n"


# --------------------------------------------------------------------------- per-value keys


def test_editing_a_value_reruns_only_the_steps_that_read_it(built: Project) -> None:
    built.write("params.yaml", PARAMS.replace("n_est: 10", "n_est: 12"))
    assert built.orch("build").exit_code == 0
    assert built.new_runs() == ["fit"]
    assert built.read("fit.txt") == "12 t12\n"
    built.write("params.yaml", PARAMS.replace("n_est: 10", "n_est: 12").replace("0.1", "0.3"))
    assert built.orch("build").exit_code == 0
    assert built.new_runs() == ["rate"]
    assert built.read("rate.txt") == "0.3\n"


def test_editing_a_value_no_step_reads_reruns_nothing(built: Project) -> None:
    plan = _plan_bytes(built)
    built.write("params.yaml", PARAMS.replace("seed: 3", "seed: 4") + "extra: {a: 1}\n")
    result = built.orch("build")
    assert result.exit_code == 0
    assert result.stdout.endswith("all 3 steps up to date\n")
    assert built.new_runs() == []
    assert _plan_bytes(built) != plan, "the plan was compiled again and saved"


def test_set_inside_a_var_reruns_only_its_users(built: Project) -> None:
    assert built.orch("build", "--set", "train.lr=0.9").exit_code == 0
    assert built.new_runs() == ["rate"]
    assert built.orch("build", "--set", "train.lr=0.9", "--set", "train.n_est=1").exit_code == 0
    assert built.new_runs() == ["fit"]


def test_a_step_that_uses_a_whole_mapping_reruns_on_any_edit_in_it(project: Project) -> None:
    project.pipeline("""\
        version: 1
        vars: [params.yaml]
        steps:
          dump:
            run: echo dump >> runs.log; echo '{{ train | tojson }}' > dump.txt
            output: dump.txt
          loop:
            run: >-
              echo loop >> runs.log;
              echo '{% for k, v in train.items() %}{{ k }}{% endfor %}' > loop.txt
            output: loop.txt
          one:
            run: echo one >> runs.log; echo {{ train.n_est }} > one.txt
            output: one.txt
        """)
    project.write("params.yaml", PARAMS)
    assert project.orch("build").exit_code == 0
    assert sorted(project.new_runs()) == ["dump", "loop", "one"]
    project.write("params.yaml", PARAMS.replace("lr: 0.1", "lr: 0.1\n  depth: 4"))
    assert project.orch("build").exit_code == 0
    assert sorted(project.new_runs()) == ["dump", "loop"]
    assert project.read("loop.txt") == "n_estlrdepth\n"

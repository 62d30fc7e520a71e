"""`-B` forces only the named steps (all of them when none is named); `--downstream` also forces
what follows them; the steps before them are built only if out of date."""

from __future__ import annotations

import json

import pytest

from .buildkit import Project

CHAIN = """
version: 1
steps:
  fetch:
    inputs: [source.txt]
    output: raw.txt
    run: cp source.txt raw.txt && echo fetch >> runs.log
  clean:
    inputs: [raw.txt]
    output: clean.txt
    run: tr a-z A-Z < raw.txt > clean.txt && echo clean >> runs.log
  report:
    inputs: [clean.txt]
    output: report.txt
    run: wc -c < clean.txt > report.txt && echo report >> runs.log
  other:
    output: other.txt
    run: echo other > other.txt && echo other >> runs.log
"""


@pytest.fixture
def chain(project: Project) -> Project:
    project.pipeline(CHAIN)
    project.write("source.txt", "hello\n")
    assert project.orch("build", "-j", "1").exit_code == 0
    assert project.new_runs() == ["fetch", "clean", "report", "other"]
    return project


def test_b_runs_only_the_named_step(chain: Project) -> None:
    build = chain.orch("build", "-B", "clean")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert chain.new_runs() == ["clean"]
    assert build.lines[0].endswith("run       clean  (forced (--force))")
    assert build.lines[-1].endswith(": 1 ran, 1 up to date"), "fetch is checked, not run"


def test_downstream_also_runs_what_follows(chain: Project) -> None:
    build = chain.orch("build", "-j", "1", "-B", "clean", "--downstream")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert chain.new_runs() == ["clean", "report"]


def test_b_without_a_name_runs_every_step(chain: Project) -> None:
    assert chain.orch("build", "-j", "1", "-B").exit_code == 0
    assert chain.new_runs() == ["fetch", "clean", "report", "other"]


def test_steps_before_the_named_one_run_only_if_out_of_date(chain: Project) -> None:
    chain.write("source.txt", "changed\n")
    assert chain.orch("build", "-j", "1", "-B", "report").exit_code == 0
    assert chain.new_runs() == ["fetch", "clean", "report"]
    assert chain.orch("build", "-B", "report").exit_code == 0
    assert chain.new_runs() == ["report"]


def test_an_output_path_names_its_step(chain: Project) -> None:
    assert chain.orch("build", "-B", "clean.txt").exit_code == 0
    assert chain.new_runs() == ["clean"]


def test_a_dry_run_says_what_b_would_run(chain: Project) -> None:
    dry = chain.orch("build", "-n", "-B", "clean", "--downstream")
    assert dry.exit_code == 0, dry.stdout + dry.stderr
    assert dry.lines == [
        "run         clean  (forced (--force))",
        "run         report  (forced (--force); upstream will change)",
        "dry run: 2 of 3 steps would change",
    ]
    assert chain.new_runs() == []


def test_downstream_without_b_is_a_usage_error(chain: Project) -> None:
    build = chain.orch("build", "--downstream", "clean")
    assert build.exit_code == 2
    assert "--downstream goes with -B/--force" in build.stderr
    assert chain.new_runs() == []


def test_a_group_planned_later_is_forced_once_planned(project: Project) -> None:
    project.pipeline(
        """
version: 1
steps:
  architect:
    inputs: [design.json]
    output: plan.json
    run: cp design.json plan.json && echo architect >> runs.log
  builder:
    foreach: { rows: "{{ steps.architect.output }}", key: name }
    output: "out/{{ item.name }}.txt"
    run: mkdir -p out && echo {{ item.name }} > {{ outputs[0] }} && echo {{ item.name }} >> runs.log
"""
    )
    project.write("design.json", json.dumps([{"name": "a"}, {"name": "b"}]))
    assert project.orch("build", "-j", "1").exit_code == 0
    assert project.new_runs() == ["architect", "a", "b"]
    assert project.orch("build", "-j", "1", "-B", "builder").exit_code == 0
    assert project.new_runs() == ["a", "b"], "the architect is up to date: not forced"

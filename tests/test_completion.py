"""Shell completion: click's scripts for bash, zsh and fish, and targets completed with the
step and group names of the pipeline, silently when it cannot be planned."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .buildkit import Project

PIPELINE = """\
version: 1
steps:
  fetch:
    run: echo data
    stdout: build/data.txt
  page:
    foreach: [en, fr]
    inputs: [build/data.txt]
    template: "{{ item }}"
    output: "build/{{ item }}.txt"
  publish:
    needs: [page]
    run: "true"
"""


def complete(project: Project, *words: str) -> list[str]:
    """What bash completion offers for the last word of `orch WORDS`, as `type,value` lines."""
    env = {
        **os.environ,
        "_ORCH_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(("orch", *words)),
        "COMP_CWORD": str(len(words)),
    }
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    return [line for line in done.stdout.splitlines() if line]


def test_targets_complete_with_the_steps_and_groups(project: Project) -> None:
    project.pipeline(PIPELINE)

    assert complete(project, "build", "") == [
        "plain,fetch",
        "plain,page@en",
        "plain,page@fr",
        "plain,publish",
        "plain,page",
    ]
    assert complete(project, "clean", "pa") == ["plain,page@en", "plain,page@fr", "plain,page"]
    assert complete(project, "status", "fetch", "p") == [
        "plain,page@en",
        "plain,page@fr",
        "plain,publish",
        "plain,page",
    ]


def test_the_targets_of_a_named_pipeline_complete_from_it(project: Project) -> None:
    project.write("pipelines/site.yaml", PIPELINE.replace("fetch", "download"))

    assert complete(project, "build", "pipelines/site.yaml", "d") == ["plain,download"]


def test_without_orch_yaml_the_first_word_also_completes_as_a_file(project: Project) -> None:
    assert complete(project, "build", "pip") == ["file,pip"]


def test_a_broken_pipeline_completes_nothing_and_prints_nothing(project: Project) -> None:
    project.pipeline("version: 1\nsteps:\n  a: {run: 'true', nope: 1}\n")

    assert complete(project, "build", "") == []


@pytest.mark.parametrize(
    ("shell", "start"),
    [
        ("bash", "_orch_completion() {"),
        ("zsh", "#compdef orch"),
        ("fish", "function _orch_completion;"),
    ],
)
def test_each_shell_gets_its_script(project: Project, shell: str, start: str) -> None:
    env = {**os.environ, "_ORCH_COMPLETE": f"{shell}_source"}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith(start)

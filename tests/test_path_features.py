"""Paths in real builds: glob exclusions, optional inputs, output folders made by orch, and the
pipeline-level `env`."""

from __future__ import annotations

import os

from .buildkit import Project

# --------------------------------------------------------------------------- output folders


def test_the_folders_of_outputs_are_made_before_a_command_runs(project: Project) -> None:
    project.write("a.txt", "one\ntwo\n")
    project.pipeline(
        """\
        version: 1
        steps:
          count:
            inputs: [a.txt]
            run: wc -l < a.txt > build/deep/count.txt
            output: build/deep/count.txt
          upper:
            inputs: [a.txt]
            run: tr a-z A-Z < a.txt
            stdout: captured/out/upper.txt
          site:
            run: mkdir site/pages && echo hi > site/pages/index.html
            output: site/pages/
        """
    )
    result = project.orch("build")
    assert result.exit_code == 0, result.stdout
    assert project.read("build/deep/count.txt").strip() == "2"
    assert project.read("captured/out/upper.txt") == "ONE\nTWO\n"
    assert project.read("site/pages/index.html") == "hi\n"
    assert sorted(project.lock()["count"].outputs) == ["build/deep/count.txt"]
    assert project.orch("build").stdout == "all 3 steps up to date\n"


def test_an_output_folder_through_a_symlink_out_of_the_workdir_is_not_made(
    project: Project,
) -> None:
    outside = project.root.parent / "outside"
    outside.mkdir()
    project.pipeline(
        """\
        version: 1
        steps:
          count:
            run: echo hi > link/new/count.txt
            output: link/new/count.txt
        """
    )
    os.symlink(outside, project.root / "link")
    result = project.orch("build")
    assert result.exit_code == 2
    assert "leads outside the workdir" in result.stderr
    assert not (outside / "new").exists()


# --------------------------------------------------------------------------- pipeline env

ENV_PIPELINE = """\
    version: 1
    vars:
      level: info
    env:
      LEVEL: "{{ level }}"
      REGION: eu
    steps:
      plain:
        run: echo "$LEVEL $REGION" > plain.txt; echo plain >> runs.log
        output: plain.txt
      own:
        env:
          REGION: us
        run: echo "$LEVEL $REGION" > own.txt; echo own >> runs.log
        output: own.txt
      page:
        template: "{{ env.REGION | default('none') }}"
        output: page.txt
    """


def test_the_pipeline_env_reaches_every_shell_step_and_a_step_env_wins(
    project: Project,
) -> None:
    project.pipeline(ENV_PIPELINE)
    assert project.orch("build").exit_code == 0
    assert project.read("plain.txt") == "info eu\n"
    assert project.read("own.txt") == "info us\n"
    assert project.read("page.txt") == "none", "env. in templates is the process environment"
    assert sorted(project.new_runs()) == ["own", "plain"]


def test_changing_the_pipeline_env_reruns_the_shell_steps_it_reaches(project: Project) -> None:
    project.pipeline(ENV_PIPELINE)
    assert project.orch("build").exit_code == 0
    project.new_runs()
    project.pipeline(ENV_PIPELINE.replace("REGION: eu", "REGION: ap"))
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["plain"], "own sets REGION itself"
    assert project.read("plain.txt") == "info ap\n"
    assert project.orch("build", "--set", "level=debug").exit_code == 0
    assert sorted(project.new_runs()) == ["own", "plain"]
    assert project.read("own.txt") == "debug us\n"

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

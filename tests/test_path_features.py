"""Paths in real builds: glob exclusions (in inputs and in a `files` foreach), optional inputs,
output folders made by orch, and the pipeline-level `env`."""

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


# --------------------------------------------------------------------------- exclusions

EXCLUDING = """\
    version: 1
    steps:
      gen:
        run: echo made > src/gen_made.py; echo gen >> runs.log
        output: src/gen_made.py
      count:
        inputs: ["src/**/*.py", "!src/**/test_*.py", "!src/gen_*.py", "src/test_kept.py"]
        run: cat src/*.py src/sub/*.py | wc -l > count.txt; echo count >> runs.log
        output: count.txt
      show:
        inputs: ["src/", "!src/sub/"]
        template: "{{ inputs }} {{ read('src/a.py') | trim }}"
        output: show.txt
    """


def excluding(project: Project) -> None:
    project.write("src/a.py", "a\n")
    project.write("src/sub/b.py", "b\n")
    project.write("src/test_a.py", "t\n")
    project.write("src/test_kept.py", "k\n")
    project.write("src/sub/test_b.py", "t\n")
    project.pipeline(EXCLUDING)
    assert project.orch("build").exit_code == 0
    assert sorted(project.new_runs()) == ["count", "gen"]


def test_excluded_files_are_not_in_the_key(project: Project) -> None:
    excluding(project)
    assert sorted(project.lock()["count"].inputs) == [
        "src/a.py",
        "src/sub/b.py",
        "src/test_kept.py",
    ]
    assert sorted(project.lock()["show"].inputs) == [
        "src/a.py",
        "src/gen_made.py",
        "src/test_a.py",
        "src/test_kept.py",
    ]
    assert project.read("show.txt") == "['src/'] a", "an exclusion is not among the inputs"
    project.write("src/test_a.py", "edited\n")
    project.write("src/sub/test_b.py", "edited\n")
    result = project.orch("build", "count")
    assert result.exit_code == 0
    assert project.new_runs() == [], "only excluded files changed"
    project.write("src/test_kept.py", "edited\n")
    project.write("src/sub/b.py", "edited\n")
    assert project.orch("build", "count").exit_code == 0
    assert project.new_runs() == ["count"]


def test_a_step_does_not_wait_for_the_producer_of_an_excluded_file(project: Project) -> None:
    excluding(project)
    graph = project.orch("graph")
    assert graph.exit_code == 0
    assert graph.stdout == "gen\ncount\nshow   <- gen\n"


def test_read_refuses_an_excluded_file(project: Project) -> None:
    project.write("src/a.py", "a\n")
    project.write("src/sub/b.py", "b\n")
    project.pipeline(
        """\
        version: 1
        steps:
          show:
            inputs: ["src/", "!src/sub/"]
            template: "{{ read('src/sub/b.py') }}"
            output: show.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 2
    assert "read('src/sub/b.py'): excluded from this step's inputs" in result.stderr


def test_a_file_named_with_a_leading_bang_is_written_with_dot_slash(project: Project) -> None:
    project.write("!notes.txt", "bang\n")
    project.pipeline(
        """\
        version: 1
        steps:
          copy:
            inputs: ["./!notes.txt"]
            run: cat -- {{ inputs[0] | quote }} > copy.txt
            output: copy.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.read("copy.txt") == "bang\n"
    assert list(project.lock()["copy"].inputs) == ["!notes.txt"]


# --------------------------------------------------------------------------- foreach files

FILES = """\
    version: 1
    vars:
      skip: draft
    steps:
      upper:
        foreach: {files: ["docs/**/*.md", "!docs/{{ skip }}*.md", "!docs/old/"]}
        inputs: ["{{ item }}"]
        run: tr a-z A-Z < {{ item }} > out/{{ item | stem }}.txt; echo {{ item | stem }} >> runs.log
        output: out/{{ item | stem }}.txt
    """


def test_a_files_foreach_gives_a_step_per_match_less_the_exclusions(project: Project) -> None:
    for name in ("a", "b", "draft1", "old/c", "sub/d"):
        project.write(f"docs/{name}.md", f"{name}\n")
    project.pipeline(FILES)
    assert project.orch("build").exit_code == 0
    assert sorted(project.new_runs()) == ["a", "b", "d"]
    assert sorted(p.name for p in (project.root / "out").iterdir()) == ["a.txt", "b.txt", "d.txt"]
    project.write("docs/draft2.md", "x\n")
    project.write("docs/old/e.md", "x\n")
    assert project.orch("build").stdout == "all 3 steps up to date\n", "new files are excluded"
    project.write("docs/new.md", "new\n")
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["new"], "one new file matched: one new step"
    assert project.orch("build", "--set", "skip=b").exit_code == 0
    assert sorted(project.new_runs()) == ["draft1", "draft2"]
    assert not project.exists("out/b.txt"), "the step no longer there takes its output along"


def test_a_files_foreach_that_matches_nothing_warns(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          each:
            foreach: {files: [data/*.csv, "!data/x.csv"]}
            run: echo
        """
    )
    result = project.orch("validate")
    assert result.exit_code == 0
    assert (
        "orch.yaml:4:14: warning: step 'each': foreach ('data/*.csv', '!data/x.csv') matched no"
        " files, so it gives no steps" in result.stderr
    )


# --------------------------------------------------------------------------- optional inputs

OPTIONAL = """\
    version: 1
    steps:
      join:
        inputs:
          - base.txt
          - {path: "extra/*.txt", optional: true}
          - {path: local.txt, optional: true}
        run: |
          cat base.txt extra/*.txt local.txt > joined.txt 2>/dev/null || true
          echo join >> runs.log
        output: joined.txt
    """


def saved_plans(project: Project) -> dict[str, int]:
    """Each saved plan's file and modification time."""
    folder = project.root / ".orch" / "plans"
    return {path.name: path.stat().st_mtime_ns for path in folder.glob("*.json")}


def test_optional_inputs_may_be_absent_and_rerun_the_step_when_they_appear(
    project: Project,
) -> None:
    project.write("base.txt", "base\n")
    project.pipeline(OPTIONAL)
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["join"]
    assert list(project.lock()["join"].inputs) == ["base.txt"]
    plans = saved_plans(project)

    assert project.orch("build").stdout == "all 1 step up to date\n"
    assert saved_plans(project) == plans, "the saved plan holds while they stay absent"

    project.write("extra/a.txt", "extra\n")
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["join"]
    assert project.read("joined.txt") == "base\nextra\n"

    project.write("local.txt", "local\n")
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["join"]
    assert project.read("joined.txt") == "base\nextra\nlocal\n"

    (project.root / "local.txt").unlink()
    result = project.orch("build")
    assert result.statuses() == {"join": "restored"}, "the key of base and extra again"
    assert project.read("joined.txt") == "base\nextra\n"

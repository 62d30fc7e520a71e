"""`orch clean`: the declared outputs of the steps named (and of no other step) removed, the
cache kept so the next build restores them, hand edits kept before they go, nothing removed
outside the workdir, and a real clean never beside a build."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.engine.buildlock import BuildLock

from .buildkit import Build, Project

PIPELINE = """\
version: 1
steps:
  upper:
    inputs: [src.txt]
    run: "tr a-z A-Z < src.txt; echo upper >> runs.log"
    stdout: build/upper.txt
  pages:
    foreach: [en, fr]
    inputs: [build/upper.txt]
    run: >-
      mkdir -p site/{{ item }} && cp build/upper.txt site/{{ item }}/index.txt;
      echo {{ item }} >> runs.log
    output: "site/{{ item }}/"
  notes:
    cache: false
    run: "echo notes; echo notes >> runs.log"
    stdout: build/notes.txt
"""


def built(project: Project, pipeline: str = PIPELINE) -> Project:
    project.write("src.txt", "hello\n")
    project.pipeline(pipeline)
    assert project.orch("build").exit_code == 0
    project.new_runs()
    return project


def ok(done: Build) -> Build:
    assert done.exit_code == 0, done.stdout + done.stderr
    return done


def test_clean_removes_every_output_and_the_next_build_restores_them(project: Project) -> None:
    built(project)
    lock = project.lock()

    done = ok(project.orch("clean"))

    assert done.stdout == (
        "removed  build/upper.txt\n"
        "removed  site/en/index.txt\n"
        "removed  site/fr/index.txt\n"
        "removed  build/notes.txt\n"
        "removed 4 files of 4 steps\n"
        "not in the cache, so the next build runs again: notes\n"
    )
    for path in ("build/upper.txt", "site/en", "site/fr", "build/notes.txt"):
        assert not project.exists(path), path
    assert project.exists("src.txt")
    assert project.lock() == lock
    again = ok(project.orch("build"))
    assert project.new_runs() == ["notes"]
    assert project.read("site/fr/index.txt") == "HELLO\n"
    assert again.lines[-1].endswith(": 1 ran, 3 restored")


def test_clean_removes_only_what_the_targets_name_not_what_they_need(project: Project) -> None:
    built(project)

    assert ok(project.orch("clean", "pages@fr")).stdout == (
        "removed  site/fr/index.txt\nremoved 1 file of 1 step\n"
    )
    assert project.exists("build/upper.txt")
    assert project.exists("site/en/index.txt")
    assert not project.exists("site/fr")


def test_groups_and_output_paths_are_targets(project: Project) -> None:
    built(project)

    done = ok(project.orch("clean", "pages", "build/upper.txt"))

    assert done.stdout == (
        "removed  build/upper.txt\n"
        "removed  site/en/index.txt\n"
        "removed  site/fr/index.txt\n"
        "removed 3 files of 3 steps\n"
    )
    assert project.read("build/notes.txt") == "notes\n"


def test_a_dry_run_says_what_would_go_and_removes_nothing(project: Project) -> None:
    built(project)
    project.write("build/upper.txt", "edited\n")

    done = ok(project.orch("clean", "--dry-run", "upper", "notes"))

    assert done.stdout == (
        "would remove  build/upper.txt\n"
        "warning  would keep your edit of build/upper.txt in the cache first\n"
        "would remove  build/notes.txt\n"
        "would remove 2 files of 2 steps\n"
        "not in the cache, so the next build runs again: notes\n"
    )
    assert project.read("build/upper.txt") == "edited\n"
    assert project.exists("build/notes.txt")


def test_a_hand_edit_is_kept_with_the_command_that_brings_it_back(project: Project) -> None:
    built(project)
    project.write("site/en/index.txt", "my words\n")

    done = ok(project.orch("clean", "pages@en"))

    removed, warning, summary = done.lines
    assert (removed, summary) == ("removed  site/en/index.txt", "removed 1 file of 1 step")
    prefix = "warning  kept your edit of site/en/index.txt; bring it back with: orch cache cat "
    assert warning.startswith(prefix)
    assert warning.endswith(" > site/en/index.txt")
    assert not project.exists("site/en")
    digest = warning.removeprefix(prefix).split()[0]
    back = project.orch("cache", "cat", digest)
    assert back.stdout == "my words\n"


def test_a_file_orch_never_recorded_at_an_output_path_is_kept_too(project: Project) -> None:
    project.write("src.txt", "hello\n")
    project.pipeline(PIPELINE)
    project.write("build/upper.txt", "there before any build\n")

    done = ok(project.orch("clean", "upper"))

    assert done.lines[1].startswith(
        "warning  kept build/upper.txt, which orch had not recorded; bring it back with: "
    )
    assert not project.exists("build/upper.txt")


def test_nothing_to_remove(project: Project) -> None:
    project.write("src.txt", "hello\n")
    project.pipeline(PIPELINE)

    assert ok(project.orch("clean")).stdout == "nothing to remove\n"


def test_an_unknown_target_is_a_usage_error_and_nothing_is_removed(project: Project) -> None:
    built(project)

    done = project.orch("clean", "upper", "pagse")

    assert (done.exit_code, done.stdout) == (2, "")
    assert "no step named 'pagse'" in done.stderr
    assert "did you mean 'pages'?" in done.stderr
    assert project.exists("build/upper.txt")


def test_nothing_outside_the_workdir_is_removed(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "index.txt").write_text("precious\n")
    built(project)
    for name in os.listdir(project.root / "site/en"):
        os.unlink(project.root / "site/en" / name)
    os.rmdir(project.root / "site/en")
    os.symlink(outside, project.root / "site/en")

    done = project.orch("clean", "pages@en")

    assert done.exit_code == 2
    assert "outside the workdir" in done.stderr
    assert (outside / "index.txt").read_text() == "precious\n"


def test_a_real_clean_waits_for_no_build_but_a_dry_run_needs_no_lock(project: Project) -> None:
    built(project)

    with BuildLock(project.root / ".orch" / "build.lock"):
        dry = project.orch("clean", "--dry-run")
        real = project.orch("clean")

    assert dry.exit_code == 0
    assert real.exit_code == 1
    assert real.stderr.startswith(f"another build is running in {project.root} (pid {os.getpid()})")
    assert project.exists("build/upper.txt")


def test_a_group_not_planned_yet_names_no_step_not_even_its_producer(project: Project) -> None:
    project.write("rows.src.json", '[{"name": "a"}]')
    built(
        project,
        """\
        version: 1
        steps:
          fetch:
            inputs: [rows.src.json]
            run: cp rows.src.json rows.json && echo fetched > fetch.log
            outputs: [rows.json, fetch.log]
          draft:
            foreach: { rows: rows.json, key: name }
            run: echo {{ item.name }}
            stdout: "drafts/{{ item.name }}.txt"
        """,
    )
    os.unlink(project.root / "rows.json")

    assert ok(project.orch("clean", "draft")).stdout == (
        "'draft' is not planned yet (it is planned after fetch): its steps are not known,"
        " so nothing of it is removed\nnothing to remove\n"
    )
    assert project.read("drafts/a.txt") == "a\n"
    assert project.read("fetch.log") == "fetched\n"

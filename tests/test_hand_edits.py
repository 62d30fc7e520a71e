"""Nothing lost: bytes orch did not record at an output path are kept before a build replaces
them, with a warning that gives the command bringing them back; and a step's own output files
are removed before it runs, so it runs as in a fresh build."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .buildkit import Build, Project, sha256

UPPER = """\
version: 1
steps:
  a:
    inputs: [src.txt]
    run: "tr a-z A-Z < src.txt > a.txt; echo a >> runs.log"
    output: a.txt
"""

FOLDER = """\
version: 1
steps:
  gen:
    inputs: [src.txt]
    run: "mkdir -p out/sub && cp src.txt out/sub/copy.txt; echo gen >> runs.log"
    output: out/
"""


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def kept_events(build: Build) -> list[dict[str, object]]:
    return [event["data"] for event in build.events("file.kept")]


def run_command(command: str, cwd: Path) -> None:
    """Run a printed `orch ...` command line in a shell, `orch` being this checkout's."""
    shell = f'orch() {{ "$ORCH_PYTHON" -m orchestrator "$@"; }}\n{command}\n'
    env = {**os.environ, "ORCH_PYTHON": sys.executable}
    subprocess.run(["/bin/sh", "-ec", shell], cwd=cwd, env=env, check=True)


def warning_line(build: Build, path: str, edited: bool = True) -> str:
    """The printed warning about `path`; it names the file and holds the command."""
    what = f"your edit of {path}" if edited else f"{path}, which orch had not recorded"
    (line,) = [line for line in build.lines if f"kept {what}; bring it back with: " in line]
    return line


def command_in(line: str) -> str:
    return line.split("bring it back with: ", 1)[1]


def test_an_edit_is_kept_when_its_step_reruns_and_the_warning_brings_it_back(
    project: Project,
) -> None:
    project.pipeline(UPPER)
    project.write("src.txt", "one\n")
    ok(project.orch("build"))
    project.write("src.txt", "two\n")
    rerun = ok(project.orch("build"))
    assert kept_events(rerun) == []  # orch's own bytes are not kept
    assert project.read("a.txt") == "TWO\n"

    edited = "TWO\nmy own line\n"
    project.write("a.txt", edited)
    project.write("src.txt", "three\n")
    build = ok(project.orch("build"))
    assert project.new_runs() == ["a", "a", "a"]
    assert project.read("a.txt") == "THREE\n"
    command = f"orch cache cat {sha256(edited)} > a.txt"
    line = warning_line(build, "a.txt")
    assert line == f"warning   a  kept your edit of a.txt; bring it back with: {command}"
    (event,) = build.events("file.kept")
    assert event["level"] == "warning"
    assert event["data"] == {
        "path": "a.txt",
        "sha256": sha256(edited),
        "size_bytes": len(edited),
        "reason": "edited",
        "command": command,
    }

    run_command(command, project.root)
    assert project.read("a.txt") == edited


def test_an_edit_is_kept_before_a_restore_overwrites_it(project: Project) -> None:
    project.pipeline(UPPER)
    project.write("src.txt", "one\n")
    ok(project.orch("build"))
    project.write("src.txt", "two\n")
    ok(project.orch("build"))
    project.write("src.txt", "one\n")  # back to a key the cache holds
    project.write("a.txt", "hand made\n")
    build = ok(project.orch("build"))
    assert build.statuses() == {"a": "restored"}
    assert project.read("a.txt") == "ONE\n"
    line = warning_line(build, "a.txt")
    assert [e["data"]["path"] for e in build.events("file.kept", "a")] == ["a.txt"]

    run_command(command_in(line), project.root)
    assert project.read("a.txt") == "hand made\n"
    project.write("a.txt", "ONE\n")
    assert kept_events(ok(project.orch("build"))) == []


def test_a_file_added_to_an_output_folder_is_kept_then_removed(project: Project) -> None:
    project.pipeline(FOLDER)
    project.write("src.txt", "one\n")
    ok(project.orch("build"))
    project.write("out/sub/mine.txt", "my notes\n")
    project.write("src.txt", "two\n")
    build = ok(project.orch("build"))
    assert project.new_runs() == ["gen", "gen"]
    assert not project.exists("out/sub/mine.txt")
    assert project.read("out/sub/copy.txt") == "two\n"
    line = warning_line(build, "out/sub/mine.txt", edited=False)
    assert kept_events(build)[0]["reason"] == "unrecorded"

    run_command(command_in(line), project.root)
    assert project.read("out/sub/mine.txt") == "my notes\n"
    # a restore removes the stray file again, and keeps it first
    project.write("src.txt", "one\n")
    restored = ok(project.orch("build"))
    assert restored.statuses() == {"gen": "restored"}
    assert not project.exists("out/sub/mine.txt")
    assert [e["data"]["path"] for e in restored.events("file.removed")] == ["out/sub/mine.txt"]
    run_command(command_in(warning_line(restored, "out/sub/mine.txt", edited=False)), project.root)
    assert project.read("out/sub/mine.txt") == "my notes\n"


def test_a_file_at_an_output_path_before_the_first_build_is_kept(project: Project) -> None:
    project.pipeline(UPPER)
    project.write("src.txt", "one\n")
    project.write("a.txt", "mine, not orch's\n")
    build = ok(project.orch("build"))
    assert project.read("a.txt") == "ONE\n"
    run_command(command_in(warning_line(build, "a.txt", edited=False)), project.root)
    assert project.read("a.txt") == "mine, not orch's\n"


def test_the_command_names_the_pipeline_when_orch_runs_from_another_folder(
    project: Project,
) -> None:
    project.write("app/orch.yaml", UPPER)
    project.write("app/src.txt", "one\n")
    ok(project.orch("build", "app/orch.yaml"))
    project.write("app/a.txt", "edited\n")
    project.write("app/src.txt", "two\n")
    build = ok(project.orch("build", "app/orch.yaml"))
    command = command_in(warning_line(build, "a.txt"))  # paths in messages are the workdir's
    digest = sha256("edited\n")
    assert command == f"orch cache cat {digest} app/orch.yaml > app/a.txt"
    run_command(command, project.root)
    assert project.read("app/a.txt") == "edited\n"


def test_a_command_that_writes_no_output_fails_though_an_old_one_is_there(
    project: Project,
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          a: {inputs: [src.txt], run: "cat src.txt > /dev/null", output: a.txt}
        """
    )
    project.write("src.txt", "one\n")
    project.write("a.txt", "left over\n")
    build = project.orch("build")
    assert build.exit_code == 1
    (failed,) = build.events("step.failed", "a")
    assert failed["data"]["message"] == "did not create its output file 'a.txt'"
    assert "a" not in project.lock()
    assert not project.exists("a.txt")
    run_command(command_in(warning_line(build, "a.txt", edited=False)), project.root)
    assert project.read("a.txt") == "left over\n"


def test_commands_that_append_or_skip_existing_outputs_behave_as_in_a_fresh_build(
    project: Project,
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          log: {inputs: [src.txt], run: "cat src.txt >> log.txt", output: log.txt}
          once:
            inputs: [src.txt]
            run: "mkdir -p out; test -f out/once.txt || cp src.txt out/once.txt"
            output: out/
        """
    )
    project.write("src.txt", "one\n")
    ok(project.orch("build"))
    project.write("src.txt", "two\n")
    build = ok(project.orch("build"))
    assert project.read("log.txt") == "two\n"
    assert project.read("out/once.txt") == "two\n"
    assert kept_events(build) == []


def test_clearing_a_folder_leaves_the_outputs_of_steps_nested_in_it(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          site:
            inputs: [src.txt]
            run: "mkdir -p site && cp src.txt site/index.txt && echo site >> runs.log"
            output: site/
          extra: {run: "mkdir -p site/extra && echo x > site/extra/x.txt", output: site/extra/x.txt}
        """
    )
    project.write("src.txt", "one\n")
    ok(project.orch("build"))
    project.write("src.txt", "two\n")
    build = ok(project.orch("build"))
    assert build.statuses() == {"site": "ran", "extra": "up-to-date"}
    assert project.read("site/extra/x.txt") == "x\n"
    assert kept_events(build) == []


def _age(path: Path, days: float) -> None:
    past = time.time() - days * 86400
    os.utime(path, (past, past))


def test_gc_keeps_kept_edits_as_long_as_step_results(project: Project) -> None:
    project.pipeline(UPPER)
    project.write("src.txt", "one\n")
    ok(project.orch("build"))
    project.write("a.txt", "precious\n")
    project.write("src.txt", "two\n")
    build = ok(project.orch("build"))
    command = command_in(warning_line(build, "a.txt"))
    cache = project.root / ".orch" / "cache"
    for action in (cache / "actions").iterdir():
        _age(action, days=40)
    digest = sha256("precious\n")
    kept = cache / "kept" / f"{digest}.json"
    _age(kept, days=10)
    info = ok(project.orch("cache", "info"))
    assert ": 2 step results, 1 kept edits, 3 files, " in info.stdout

    gc = ok(project.orch("cache", "gc"))
    assert gc.stdout.startswith("removed 2 step results and 2 files")
    run_command(command, project.root)
    assert project.read("a.txt") == "precious\n"

    _age(kept, days=40)
    gc = ok(project.orch("cache", "gc"))
    assert gc.stdout.startswith("removed 0 step results, 1 kept edits and 1 files")
    cat = project.orch("cache", "cat", digest)
    assert cat.exit_code == 1
    assert "no object" in cat.stderr


def test_cache_cat_refuses_what_is_not_a_digest(project: Project) -> None:
    result = project.orch("cache", "cat", "abc123")
    assert result.exit_code == 2
    assert "DIGEST is a sha256" in result.stderr

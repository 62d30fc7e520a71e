"""Nothing outside the workdir: a build never removes or writes a file through a symlink that
leads out of it, even when a step swaps a folder for such a symlink in the middle of the build.

Each test keeps an `outside` folder next to the workdir, full of files whose names match the
outputs, and asserts it is byte for byte (and mtime for mtime) what it was. Swaps at an exact
moment of orch's work are made by `interleave.before`, as a step running alongside could.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.paths import escapes_through_symlink

from .buildkit import Build, Project, snapshot
from .interleave import before, named, swap_for_link

SWAPPED_BY_AN_EARLIER_STEP = """\
version: 1
steps:
  a:
    always_run: true
    run: "echo a > a.txt; if [ -f swap.flag ]; then rm -rf out; ln -s ../outside out; fi"
    output: a.txt
  b:
    inputs: [a.txt]
    run: "mkdir -p out; {command}"
    outputs: [out/]
"""


def outside(tmp_path: Path, *names: str) -> Path:
    """The folder next to the workdir, holding a file for each name."""
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"precious {name}\n")
    return folder


def refused(build: Build, step: str, path: str) -> str:
    """The build failed that step as refused, naming `path`, without a traceback."""
    assert build.exit_code == 1, build.stdout + build.stderr
    assert "Traceback" not in build.stdout + build.stderr
    (failure,) = build.events("step.failed", step)
    assert failure["data"]["kind"] == "refused"
    message: str = failure["data"]["message"]
    assert f"{path}'" in message, message
    assert "outside the workdir" in message
    return message


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


@pytest.mark.parametrize(
    "command", ["true", "echo b > out/b.txt"], ids=["empty-result", "result-with-a-file"]
)
def test_a_folder_output_restored_after_an_earlier_step_made_it_a_symlink_outside(
    project: Project, tmp_path: Path, command: str
) -> None:
    """The measured failure: the stray removal of the restore followed the symlink."""
    away = outside(tmp_path, "keep.txt", "b.txt", "sub/deep.txt")
    was = snapshot(away)
    project.pipeline(SWAPPED_BY_AN_EARLIER_STEP.format(command=command))
    assert project.orch("build").exit_code == 0
    project.write("swap.flag", "")

    process = project.spawn("build")
    stdout, stderr = process.communicate(timeout=60)
    assert snapshot(away) == was
    assert process.returncode == 1, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert "FAILED    b  ('out/' leads outside the workdir through a symlink)" in stdout
    assert "restored" not in stdout


def test_stray_files_removed_by_a_restore_never_through_a_folder_swapped_meanwhile(
    project: Project, tmp_path: Path
) -> None:
    away = outside(tmp_path, "one.txt", "s1.txt", "s2.txt")
    was = snapshot(away)
    project.pipeline(
        """\
        version: 1
        steps:
          gen:
            inputs: [src.txt]
            run: mkdir -p out/sub; cp src.txt out/sub/one.txt
            outputs: [out/]
        """
    )
    for text in ("one\n", "two\n", "one\n"):
        project.write("src.txt", text)
        if text == "one\n" and project.exists("out"):
            project.write("out/sub/s1.txt", "stray 1\n")
            project.write("out/sub/s2.txt", "stray 2\n")
            swap = swap_for_link(project.root / "out/sub", away, project.root / "moved")
            with before("os.remove", named("s1.txt"), swap):
                build = project.orch("build")
        else:
            ok(project.orch("build"))
    assert snapshot(away) == was
    refused(build, "gen", "out/sub/s2.txt")
    assert [e["data"]["path"] for e in build.events("file.kept")] == [
        "out/sub/s1.txt",
        "out/sub/s2.txt",
    ]
    assert sorted(p.name for p in (project.root / "moved").iterdir()) == ["one.txt", "s2.txt"]


def test_clearing_outputs_before_a_run_never_goes_through_a_folder_swapped_meanwhile(
    project: Project, tmp_path: Path
) -> None:
    away = outside(tmp_path, "x.txt", "y.txt")
    was = snapshot(away)
    project.pipeline(
        """\
        version: 1
        steps:
          gen:
            inputs: [src.txt]
            run: mkdir -p out/sub; cp src.txt out/sub/x.txt; cp src.txt out/sub/y.txt
            outputs: [out/]
            cache: false
        """
    )
    project.write("src.txt", "one\n")
    ok(project.orch("build"))
    project.write("src.txt", "two\n")
    swap = swap_for_link(project.root / "out/sub", away, project.root / "moved")
    with before("os.remove", named("x.txt"), swap):
        build = project.orch("build")
    assert snapshot(away) == was
    refused(build, "gen", "out/sub/y.txt")
    assert project.read("moved/y.txt") == "one\n"


def test_an_output_folder_made_a_symlink_outside_before_a_run_is_refused_unrun(
    project: Project, tmp_path: Path
) -> None:
    away = outside(tmp_path, "keep.txt", "b.txt")
    was = snapshot(away)
    project.pipeline(SWAPPED_BY_AN_EARLIER_STEP.format(command="echo b > out/b.txt; touch ran"))
    ok(project.orch("build", "--no-cache"))
    (project.root / "ran").unlink()
    project.write("swap.flag", "")
    build = project.orch("build", "--no-cache")
    assert snapshot(away) == was
    refused(build, "b", "out/")
    assert not project.exists("ran")


def test_pruning_emptied_folders_never_goes_through_a_folder_swapped_meanwhile(
    project: Project, tmp_path: Path
) -> None:
    away = outside(tmp_path, "keep.txt")
    (away / "deep").mkdir()  # an empty folder where orch prunes one
    was = snapshot(away)
    project.pipeline(
        """\
        version: 1
        steps:
          gen:
            inputs: [src.txt]
            run: >-
              if grep -q one src.txt; then mkdir -p out/sub/deep; cp src.txt out/sub/deep/f.txt;
              else mkdir -p out; cp src.txt out/top.txt; fi
            outputs: [out/]
            cache: false
        """
    )
    project.write("src.txt", "one\n")
    ok(project.orch("build"))
    project.write("src.txt", "two\n")
    swap = swap_for_link(project.root / "out/sub", away, project.root / "moved")
    with before("os.rmdir", named("deep"), swap):
        build = project.orch("build")
    assert snapshot(away) == was
    assert list((project.root / "moved").iterdir()) == []  # the folder orch had opened
    refused(build, "gen", "out/sub")  # the link left in its output folder, met by hashing


def test_an_llm_reply_removes_stale_files_never_through_a_folder_swapped_meanwhile(
    project: Project, tmp_path: Path
) -> None:
    away = outside(tmp_path, "a.py", "b.py", "c.py")
    was = snapshot(away)

    def reply(*names: str) -> None:
        blocks = [f"```python gen/sub/{name}\n{name} = 1\n```" for name in names]
        project.write("replies/ask.md", "Files.\n\n" + "\n\n".join(blocks) + "\n")

    project.pipeline(
        json.dumps(
            {
                "version": 1,
                "providers": {"fake": {"kind": "fake", "responses": "replies"}},
                "steps": {"ask": {"prompt": "files", "extract": "files", "outputs": ["gen/"]}},
            }
        )
    )
    reply("a.py", "b.py", "c.py")
    ok(project.orch("build"))
    reply("a.py")
    swap = swap_for_link(project.root / "gen/sub", away, project.root / "moved")
    with before("os.remove", named("b.py"), swap):
        build = project.orch("build")
    assert snapshot(away) == was
    refused(build, "ask", "gen/sub/c.py")
    assert sorted(p.name for p in (project.root / "moved").iterdir()) == ["a.py", "c.py"]
    assert [e["data"]["path"] for e in build.events("file.removed")] == ["gen/sub/b.py"]


@pytest.mark.parametrize("pattern", ["*/notes.txt", "d*/*.txt", "[d]ata/notes.txt"])
def test_a_glob_input_matching_through_a_symlinked_folder_is_refused(
    project: Project, tmp_path: Path, pattern: str
) -> None:
    away = outside(tmp_path, "notes.txt")
    (project.root / "data").symlink_to(away, target_is_directory=True)
    project.write("real/notes.txt", "mine\n")
    project.pipeline(
        f"""\
        version: 1
        steps:
          count:
            inputs: ["{pattern}"]
            run: echo count >> runs.log; cat {pattern} | wc -l > count.txt
            output: count.txt
        """
    )
    build = project.orch("build")
    assert refused(build, "count", "data/").endswith(
        f"matched by '{pattern}', leads outside the workdir through a symlink"
    )
    assert project.new_runs() == []


def test_a_glob_input_whose_folder_an_earlier_step_made_a_symlink_is_refused(
    project: Project, tmp_path: Path
) -> None:
    away = outside(tmp_path, "notes.txt")
    project.write("data/notes.txt", "mine\n")
    project.pipeline(
        f"""\
        version: 1
        steps:
          swap:
            run: rm -rf data; ln -s {json.dumps(str(away))} data; echo > swapped.txt
            output: swapped.txt
          count:
            needs: [swap]
            inputs: ["data/*.txt"]
            run: echo count >> runs.log; cat data/*.txt > all.txt
            output: all.txt
        """
    )
    build = project.orch("build")
    refused(build, "count", "data/")
    assert project.new_runs() == []
    objects = project.root / ".orch" / "cache" / "objects"
    assert "precious notes.txt\n" not in [p.read_text() for p in objects.rglob("*") if p.is_file()]


def test_an_output_written_by_orch_into_a_folder_made_a_symlink_outside_is_refused(
    project: Project, tmp_path: Path
) -> None:
    away = outside(tmp_path, "index.txt")
    was = snapshot(away)
    project.pipeline(
        f"""\
        version: 1
        steps:
          swap:
            run: rm -rf pages; ln -s {json.dumps(str(away))} pages; echo > swapped.txt
            output: swapped.txt
          page:
            needs: [swap]
            template: "hello"
            output: pages/index.txt
          capture:
            needs: [swap]
            run: echo captured
            stdout: pages/captured.txt
        """
    )
    project.write("pages/index.txt", "old\n")
    build = project.orch("build", "-k")
    assert snapshot(away) == was
    refused(build, "page", "pages/index.txt")
    refused(build, "capture", "pages/captured.txt")


# --------------------------------------------------------------------------- the rule itself

_NAMES = ("a", "b", "link_in", "link_out", "dangling")


def _tree(root: Path) -> Path:
    """A workdir of folders, a file and symlinks leading inside, outside and nowhere."""
    workdir = root / "work"
    (workdir / "a" / "b").mkdir(parents=True)
    (workdir / "a" / "file").write_text("x")
    (root / "elsewhere" / "b").mkdir(parents=True)
    (workdir / "link_in").symlink_to("a")
    (workdir / "a" / "link_out").symlink_to("../../elsewhere")
    (workdir / "a" / "b" / "dangling").symlink_to("../../../nowhere")
    (workdir / "a" / "b" / "link_in").symlink_to("..")
    return workdir


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("tree"))


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.sampled_from([*_NAMES, "file", "new", ".", ".."]), min_size=1, max_size=5))
def test_a_path_is_refused_exactly_when_it_resolves_outside_the_workdir(
    tree: Path, parts: list[str]
) -> None:
    """Whatever symlinks a path passes through, it is refused exactly when its deepest existing
    part resolves outside the workdir (what `os.path.realpath` says)."""
    path = "/".join(parts)
    root = os.path.realpath(tree)
    real = os.path.realpath(os.path.join(root, path))
    expected = not (real == root or real.startswith(root + os.sep))
    assert escapes_through_symlink(tree, path) == expected

"""Which pipeline a command uses: the one it names (`.yaml` may be left off), else `orch.yaml`,
`orch.yml` or the only `pipelines/*.yaml`; and `orch -C DIR`, which runs a command in DIR."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli import discovery
from orchestrator.cli.commands import cli
from tests.buildkit import Project

ONE_STEP = """\
version: 1
steps:
  builder:
    run: echo {word} > {output}
    output: {output}
"""
"""A pipeline whose step `builder` writes `output` (relative to the pipeline's folder)."""

TWO_STEPS = """\
version: 1
workdir: ..
steps:
  builder:
    run: echo hi > out.txt
    output: out.txt
  user:
    run: cat out.txt > used.txt
    inputs: [out.txt]
    output: used.txt
"""
"""A pipeline kept in `pipelines/` whose workdir is the folder above."""


def _orch(*args: str) -> Result:
    """`orch ARGS` in-process, back in the current folder afterwards (as after a process)."""
    here = Path.cwd()
    try:
        return CliRunner().invoke(cli, list(args))
    finally:
        os.chdir(here)


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _last_line(result: Result) -> str:
    return result.stdout.splitlines()[-1]


# --------------------------------------------------------------------------- the folder's pipeline


def test_orch_yaml_wins_over_the_pipelines_folder(project: Project) -> None:
    project.write("orch.yaml", ONE_STEP.format(word="top", output="top.txt"))
    project.write("pipelines/app.yaml", TWO_STEPS)
    assert _orch("validate").stdout == "orch.yaml: ok (1 step)\n"
    assert _orch("graph").stdout == "builder\n"
    built = _orch("build")
    assert (built.exit_code, _last_line(built)[:12]) == (0, "succeeded in")
    assert project.read("top.txt") == "top\n"
    assert not project.exists("used.txt")


def test_orch_yml_is_found_when_there_is_no_orch_yaml(project: Project) -> None:
    project.write("orch.yml", ONE_STEP.format(word="yml", output="out.txt"))
    project.write("pipelines/app.yaml", TWO_STEPS)
    assert _orch("validate").stdout == "orch.yml: ok (1 step)\n"


def test_the_only_pipeline_in_pipelines_is_found_by_every_command(project: Project) -> None:
    project.write("pipelines/app.yaml", TWO_STEPS)
    project.write("pipelines/app.lock.bak", "not a pipeline")
    project.write("pipelines/app/prompt.md", "a folder of the pipeline's files")

    assert _orch("validate").stdout == "pipelines/app.yaml: ok (2 steps)\n"
    assert _orch("graph").stdout == "builder\nuser     <- builder\n"
    status = _orch("status")
    assert status.stdout == "run         builder  (never built)\nrun         user  (never built)\n"
    built = _orch("build", "user")
    assert (built.exit_code, _last_line(built)[-7:]) == (0, ": 2 ran")
    assert project.read("used.txt") == "hi\n"
    assert project.exists("pipelines/app.lock")
    assert _orch("status").stdout.endswith("all 2 steps up to date\n")
    info = _orch("cache", "info")
    assert info.stdout.startswith(f"{project.root}/.orch/cache: 2 step results, 1 files")


def test_the_cache_commands_use_the_found_pipelines_workdir(project: Project) -> None:
    project.write("pipelines/app.yaml", ONE_STEP.format(word="hi", output="out.txt"))
    assert _orch("build").exit_code == 0
    assert project.exists("pipelines/out.txt")  # the workdir is the pipeline's folder
    info = _orch("cache", "info")
    assert info.stdout.startswith(f"{project.root}/pipelines/.orch/cache: 1 step results, 1 files,")


def test_the_cache_commands_work_in_a_folder_without_a_pipeline(project: Project) -> None:
    info = _orch("cache", "info")
    assert (info.exit_code, info.stdout) == (
        0,
        f"{project.root}/.orch/cache: 0 step results, 0 files, 0 B\n",
    )


@pytest.mark.parametrize(
    "command",
    [("build",), ("build", "builder"), ("status",), ("graph",), ("validate",), ("cache", "info")],
)
def test_two_pipelines_are_a_usage_error_listing_both(
    project: Project, command: tuple[str, ...]
) -> None:
    project.write("pipelines/b.yml", ONE_STEP.format(word="b", output="b.txt"))
    project.write("pipelines/a.yaml", ONE_STEP.format(word="a", output="a.txt"))
    before = _files(project.root)
    result = _orch(*command)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"2 pipelines found in {project.root}: pipelines/a.yaml, pipelines/b.yml; name one\n"
    )
    assert _files(project.root) == before


@pytest.mark.parametrize("command", [("build",), ("status",), ("graph",), ("validate",)])
def test_no_pipeline_is_a_usage_error_saying_where_orch_looked(
    project: Project, command: tuple[str, ...]
) -> None:
    project.write("pipelines/notes.txt", "not a pipeline")
    result = _orch(*command)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"no pipeline found in {project.root} (looked for orch.yaml, orch.yml,"
        " pipelines/*.yaml, pipelines/*.yml); name one\n"
    )
    assert _files(project.root) == {"pipelines", "pipelines/notes.txt"}


# --------------------------------------------------------------------------- naming one


def test_a_pipeline_named_without_its_extension_is_found(project: Project) -> None:
    project.write("pipelines/notes_app.yaml", TWO_STEPS)
    project.write("pipelines/notes_app/prompt.md", "a folder beside the pipeline")
    project.write("pipelines/other.yml", ONE_STEP.format(word="o", output="o.txt"))

    assert _orch("validate", "pipelines/notes_app").stdout == (
        "pipelines/notes_app.yaml: ok (2 steps)\n"
    )
    assert _orch("validate", "pipelines/other").stdout == "pipelines/other.yml: ok (1 step)\n"
    assert _orch("graph", "pipelines/notes_app").stdout == "builder\nuser     <- builder\n"
    status = _orch("status", "pipelines/notes_app", "builder")
    assert status.stdout == "run         builder  (never built)\n"
    built = _orch("build", "pipelines/notes_app", "builder")
    assert (built.exit_code, _last_line(built)[-7:]) == (0, ": 1 ran")
    assert project.exists("out.txt") and not project.exists("used.txt")
    assert project.exists("pipelines/notes_app.lock")
    info = _orch("cache", "info", "pipelines/notes_app")
    assert info.stdout.startswith(f"{project.root}/.orch/cache: 1 step results, 1 files,")


def test_a_missing_pipeline_is_named_as_given(project: Project) -> None:
    result = _orch("graph", "pipelines/nope")
    assert (result.exit_code, result.stderr) == (2, "pipelines/nope: no such pipeline file\n")


def test_a_step_name_as_first_word_is_a_target(project: Project) -> None:
    project.write("pipelines/app.yaml", TWO_STEPS)
    built = _orch("build", "builder")
    assert built.exit_code == 0, built.output
    assert project.exists("out.txt") and not project.exists("used.txt")


def test_a_yaml_file_named_like_a_step_stays_a_target_unless_it_is_a_pipeline(
    project: Project,
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          params:
            run: echo rate=1 > params.yaml
            output: params.yaml
          report:
            run: cat params.yaml > report.txt
            inputs: [params.yaml]
            output: report.txt
        """
    )
    assert _orch("build", "params").exit_code == 0
    assert project.exists("params.yaml") and not project.exists("report.txt")
    assert _orch("build", "params").exit_code == 0  # params.yaml exists now: still the step
    assert not project.exists("report.txt")
    status = _orch("status", "params", "report")
    assert status.stdout == "up-to-date  params\nrun         report  (never built)\n"


# --------------------------------------------------------------------------- -C DIR


def test_dash_c_runs_the_command_in_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "sub"
    (sub / "pipelines").mkdir(parents=True)
    (sub / "pipelines/app.yaml").write_text(TWO_STEPS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert _orch("-C", "../sub", "validate").stdout == "pipelines/app.yaml: ok (2 steps)\n"
    assert _orch("-C", "../sub", "validate", "pipelines/app").exit_code == 0
    built = _orch("-C", "../sub", "build", "pipelines/app.yaml", "out.txt")
    assert built.exit_code == 0, built.output
    assert built.stdout.startswith("building step 'builder' (it writes out.txt)\n")
    assert (sub / "out.txt").read_text() == "hi\n" and not (sub / "used.txt").exists()
    status = _orch("--directory", str(sub), "status", "user")
    assert status.stdout == "up-to-date  builder\nrun         user  (never built)\n"
    runs = _orch("-C", "../sub", "runs", "--json")
    assert runs.exit_code == 0 and runs.stdout.count('"job_id"') == 1
    assert list(elsewhere.iterdir()) == []


def test_dash_c_and_the_runs_commands_own_dash_c_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "orch.yaml").write_text(ONE_STEP.format(word="hi", output="out.txt"))
    monkeypatch.chdir(tmp_path)
    assert _orch("-C", "sub", "build").exit_code == 0
    direct = _orch("-C", "sub", "runs", "--json").stdout
    assert _orch("runs", "-C", "sub", "--json").stdout == direct
    monkeypatch.chdir(tmp_path.parent)
    assert _orch("-C", tmp_path.name, "runs", "-C", "sub", "--json").stdout == direct
    assert direct.count('"job_id"') == 1


def test_dash_c_in_a_real_process(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "orch.yaml").write_text(ONE_STEP.format(word="hi", output="out.txt"))
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "-C", "sub", "status"],
        cwd=tmp_path,
        env={**os.environ, "CI": "1", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "run         builder  (never built)\n")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing", "Directory 'missing' does not exist."),
        ("a-file", "Directory 'a-file' is a file."),
    ],
)
def test_dash_c_on_what_is_not_a_folder_is_a_usage_error(
    project: Project, where: str, message: str
) -> None:
    project.write("a-file", "")
    project.write("orch.yaml", ONE_STEP.format(word="hi", output="out.txt"))
    result = _orch("-C", where, "build")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '-C' / '--directory': {message}"
    )
    assert "Traceback" not in result.output
    assert _files(project.root) == {"a-file", "orch.yaml"}


# --------------------------------------------------------------------------- the module


def test_search_prefers_orch_yaml_then_orch_yml_then_the_pipelines_folder(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines/app.yaml").write_text("")
    assert discovery.search(tmp_path).found == (Path("pipelines/app.yaml"),)
    (tmp_path / "orch.yml").write_text("")
    assert discovery.search(tmp_path).found == (Path("orch.yml"),)
    (tmp_path / "orch.yaml").write_text("")
    assert discovery.search(tmp_path).found == (Path("orch.yaml"),)


def test_search_skips_hidden_files_folders_and_other_names(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines"
    (pipelines / "folder.yaml").mkdir(parents=True)
    for name in (".hidden.yaml", "app.lock", "notes.md", "app.yaml.bak", "b.yml"):
        (pipelines / name).write_text("")
    assert discovery.search(tmp_path).found == (Path("pipelines/b.yml"),)


def test_named_adds_the_extension_only_when_it_was_left_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text("")
    Path("b.yml").write_text("")
    Path("c").write_text("")
    Path("c.yaml").write_text("")
    assert [discovery.named(word) for word in ("a", "b", "c", "a.yaml", "a.yml", "d")] == [
        Path("a.yaml"),
        Path("b.yml"),
        Path("c"),
        Path("a.yaml"),
        None,
        None,
    ]

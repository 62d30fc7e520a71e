"""`orch init`: a starter pipeline that validates and builds offline at once, `.orch/` ignored
by git, a CI workflow; and never a file overwritten without `--force`."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from orchestrator.cli.starter import CI_WORKFLOW, STARTER

from .buildkit import Project
from .readmekit import blocks, replay, section

WROTE_ALL = "wrote orch.yaml\nwrote .gitignore\nwrote .github/workflows/orch.yml\n"


def test_init_writes_a_starter_that_validates_and_builds_offline(project: Project) -> None:
    done = project.orch("init")

    assert (done.exit_code, done.stdout) == (0, WROTE_ALL)
    assert project.read("orch.yaml") == STARTER
    assert project.read(".gitignore") == ".orch/\n"
    assert project.orch("validate").stdout == "orch.yaml: ok (3 steps)\n"
    build = project.orch("build")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert build.lines[-1].startswith("succeeded in ")
    assert [line.split()[1] for line in build.lines if line.startswith("ok ")] == [
        "topic",
        "page",
        "summary",
    ]
    assert project.read("build/summary.md").startswith(
        "Summarise in one line: # Notes on pipelines"
    )
    assert project.orch("status", "--check").exit_code == 0


def test_the_workflow_checks_out_installs_builds_and_checks(project: Project) -> None:
    project.orch("init")

    workflow = YAML(typ="safe").load(project.read(".github/workflows/orch.yml"))

    steps = workflow["jobs"]["build"]["steps"]
    assert [step.get("uses") or step.get("run") for step in steps] == [
        "actions/checkout@v4",
        "actions/setup-python@v5",
        "pip install orch",
        "orch status --check",
        "orch build",
    ]
    assert "#   ORCH_REMOTE_CACHE: s3://" in CI_WORKFLOW


def test_init_into_a_new_folder_names_the_files_it_wrote(project: Project) -> None:
    done = project.orch("init", "site")

    assert done.exit_code == 0, done.stderr
    assert done.stdout == (
        "wrote site/orch.yaml\nwrote site/.gitignore\nwrote site/.github/workflows/orch.yml\n"
    )
    assert project.orch("validate", "site/orch.yaml").exit_code == 0


def test_init_adds_the_state_folder_to_a_gitignore_once(project: Project) -> None:
    project.write(".gitignore", "__pycache__/\n*.pyc")

    assert project.orch("init").stdout == (
        "wrote orch.yaml\nadded .orch/ to .gitignore\nwrote .github/workflows/orch.yml\n"
    )
    assert project.read(".gitignore") == "__pycache__/\n*.pyc\n.orch/\n"

    again = project.orch("init", "--force")
    assert again.stdout == "wrote orch.yaml\nwrote .github/workflows/orch.yml\n"
    assert project.read(".gitignore") == "__pycache__/\n*.pyc\n.orch/\n"


def test_an_existing_pipeline_is_refused_and_nothing_is_written(project: Project) -> None:
    project.write("orch.yaml", "# mine\n")

    done = project.orch("init")

    assert (done.exit_code, done.stdout) == (2, "")
    assert done.stderr == "orch.yaml exists; pass --force to overwrite it\n"
    assert project.read("orch.yaml") == "# mine\n"
    assert sorted(path.name for path in Path().iterdir()) == ["orch.yaml"]


def test_an_existing_workflow_is_refused_too(project: Project) -> None:
    project.write(".github/workflows/orch.yml", "name: mine\n")

    done = project.orch("init")

    assert done.exit_code == 2
    assert done.stderr == ".github/workflows/orch.yml exists; pass --force to overwrite it\n"
    assert not project.exists("orch.yaml")
    assert not project.exists(".gitignore")


def test_force_overwrites_the_pipeline(project: Project) -> None:
    project.write("orch.yaml", "# mine\n")

    done = project.orch("init", "--force")

    assert (done.exit_code, done.stdout) == (0, WROTE_ALL)
    assert project.read("orch.yaml") == STARTER


def test_a_file_where_the_folder_should_be_is_a_usage_error(project: Project) -> None:
    project.write("site", "a file\n")

    done = project.orch("init", "site")

    assert done.exit_code == 2
    assert "'site' is a file" in done.stderr
    assert project.read("site") == "a file\n"


def test_the_readme_everyday_session_replays(tmp_path: Path) -> None:
    (session, *_) = blocks(section("Everyday commands"), "console")
    printed, shown, errors = replay(session, tmp_path, stop_on_error=True)
    assert printed == shown, errors

"""The GitHub Actions workflow runs the checks the project documents, on every supported platform.

`.github/workflows/ci.yml` is read with ruamel's safe loader, which speaks YAML 1.2: the `on:`
key stays the string "on" (YAML 1.1 loaders turn it into True).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from .conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    """The parsed workflow file."""
    data: dict[str, Any] = YAML(typ="safe").load(WORKFLOW.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps of the workflow's one job."""
    (job,) = workflow["jobs"].values()
    job_steps: list[dict[str, Any]] = job["steps"]
    return job_steps


def _step(steps: list[dict[str, Any]], **fields: str) -> dict[str, Any]:
    """The one step whose fields start with the given values."""
    found = [s for s in steps if all(str(s.get(k, "")).startswith(v) for k, v in fields.items())]
    assert len(found) == 1, f"expected one step with {fields}, found {len(found)}"
    return found[0]


def ci_run_test_command(path: Path = ROOT / ".ci" / "run") -> str:
    """The test command `.ci/run` runs: its line that installs and runs pytest."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    (command,) = [line for line in lines if line.startswith("pip install") and "pytest" in line]
    return command


def readme_test_command(path: Path = ROOT / "README.md") -> str:
    """The command of the fenced sh block after "Run the tests" in the README's Quick start."""
    text = path.read_text(encoding="utf-8")
    quick_start = text[text.index("## Quick start") :]
    after = quick_start[quick_start.index("Run the tests") :]
    match = re.search(r"```sh\n(.*?)\n```", after, re.DOTALL)
    assert match is not None, "no sh block after 'Run the tests' in the README"
    return match[1].strip()


def test_workflow_runs_on_push_and_pull_request(workflow: dict[str, Any]) -> None:
    assert "on" in workflow
    assert all(isinstance(key, str) for key in workflow)
    assert {"push", "pull_request"} <= set(workflow["on"])


def test_matrix_covers_linux_and_macos_with_python_3_11_and_3_12(
    workflow: dict[str, Any],
) -> None:
    (job,) = workflow["jobs"].values()
    matrix = job["strategy"]["matrix"]
    assert sorted(matrix["os"]) == ["macos-latest", "ubuntu-latest"]
    assert sorted(matrix["python-version"]) == ["3.11", "3.12"]
    assert job["runs-on"] == "${{ matrix.os }}"


def test_pip_cache_is_keyed_on_pyproject(steps: list[dict[str, Any]]) -> None:
    setup = _step(steps, uses="actions/setup-python@v5")
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["cache-dependency-path"] == "pyproject.toml"


def test_the_workflow_runs_ci_run_and_the_golden_tests_once(steps: list[dict[str, Any]]) -> None:
    checks = _step(steps, name="Checks and tests")
    assert checks["run"] == "bash .ci/run"
    runs = " ".join(str(step.get("run", "")) for step in steps)
    assert "test_golden" not in runs, "the golden tests run once, in .ci/run's test command"
    assert "pytest" not in runs


def test_a_forced_rebuild_of_the_example_must_leave_git_unchanged(
    steps: list[dict[str, Any]],
) -> None:
    rebuild = _step(steps, name="Rebuild the example from scratch")
    assert "orch build -B pipelines/notes_app.yaml\n" in rebuild["run"]
    assert rebuild["run"].endswith("git diff --exit-code\n")
    assert steps.index(rebuild) > steps.index(_step(steps, name="Checks and tests"))


def test_the_html_report_is_always_uploaded(steps: list[dict[str, Any]]) -> None:
    report = _step(steps, name="Report of the build")
    assert report["if"] == "always()" and "orch report -o orch-report.html" in report["run"]
    upload = _step(steps, name="Keep the report")
    assert upload["if"] == "always()"
    assert upload["with"]["path"] == "orch-report.html"
    assert steps.index(report) < steps.index(upload)


def test_ci_run_and_the_readme_give_the_same_test_command() -> None:
    assert ci_run_test_command() == readme_test_command()


def test_run_folders_are_uploaded_only_when_the_job_fails(steps: list[dict[str, Any]]) -> None:
    upload = _step(steps, name="Keep the run folders")
    assert upload["if"] == "failure()"
    assert upload["with"]["path"] == ".orch/runs/"
    assert upload["with"]["if-no-files-found"] == "ignore"
    assert "${{ matrix.os }}" in upload["with"]["name"]
    assert "${{ matrix.python-version }}" in upload["with"]["name"]
    assert steps.index(upload) == len(steps) - 1

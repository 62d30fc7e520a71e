"""Shared fixtures: paths of the example pipelines and a helper to write pipelines."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.buildkit import Project
from tests.llm_server import LlmServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

collect_ignore = ["golden"]  # the expected generated app, with tests of its own


@pytest.fixture(autouse=True, scope="session")
def _no_worker_marks_in_the_environment() -> None:
    """The pytest a step runs (the example pipeline's `qa`) is a session of its own: it must
    not inherit the marks of the xdist worker running this one."""
    for name in [name for name in os.environ if name.startswith("PYTEST_XDIST_")]:
        del os.environ[name]


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[..., Path]:
    """Write a pipeline (dedented) and any extra files into tmp_path; return the pipeline path."""

    def write(text: str, files: dict[str, str] | None = None, name: str = "orch.yaml") -> Path:
        for relative, content in (files or {}).items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        pipeline = tmp_path / name
        pipeline.write_text(textwrap.dedent(text), encoding="utf-8")
        return pipeline

    return write


@pytest.fixture
def llm_server() -> Iterator[LlmServer]:
    """A loopback server speaking the OpenAI, Anthropic and Ollama wire formats."""
    with LlmServer() as server:
        yield server


SETTINGS_PREFIXES = ("ORCH_", "OPENAI_", "ANTHROPIC_", "OLLAMA_")
"""Environment variables that would change how orch builds: cleared for end-to-end tests."""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """An empty workdir `tmp_path/work` as the current folder, with no orch or provider settings
    in the environment."""
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    for variable in [v for v in os.environ if v.startswith(SETTINGS_PREFIXES)]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("NO_COLOR", "1")
    project = Project(root)
    try:
        yield project
    finally:
        project.cleanup()


@pytest.fixture(scope="session")
def notes_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the flagship pipeline's inputs, built offline once for the whole session.
    Tests that change it work on their own copy."""
    from tests.notes_kit import PIPELINE, copy_inputs, orch

    root = copy_inputs(tmp_path_factory.mktemp("notes-built"))
    done = orch(root, "build", PIPELINE)
    assert done.returncode == 0, done.stdout + done.stderr
    return root

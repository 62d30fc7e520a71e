"""Shared fixtures: paths of the example pipelines and a helper to write pipelines."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.llm_server import LlmServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

collect_ignore = ["golden"]  # the expected generated app, with tests of its own


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

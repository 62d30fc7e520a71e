"""Whatever YAML a user writes, loading returns a pipeline or raises orch's own error."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from orchestrator.core.errors import OrchError
from orchestrator.language.pipeline import LoadedPipeline
from orchestrator.plan import graph
from orchestrator.plan.loading import load

pytestmark = pytest.mark.slow

KEYS = [
    "version",
    "steps",
    "vars",
    "providers",
    "default_provider",
    "dotenv",
    "workdir",
    "name",
    "run",
    "prompt",
    "prompt_file",
    "messages",
    "template",
    "kind",
    "inputs",
    "outputs",
    "output",
    "needs",
    "foreach",
    "env",
    "cwd",
    "stdout",
    "extract",
    "schema",
    "provider",
    "model",
    "options",
    "timeout_s",
    "cache",
    "always_run",
    "role",
    "content",
    "a",
    "b",
    "x.txt",
]
TEXT = st.sampled_from(
    [
        "",
        "a",
        "b",
        "x.txt",
        "out/",
        "../up",
        "/abs",
        "*.txt",
        "{{ a }}",
        "{{ item }}",
        "{{ steps.a.output }}",
        "{{ read('x.txt') }}",
        "{% if %}",
        "shell",
        "llm",
        "fake",
        "1",
    ]
) | st.text(max_size=12)
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=5)
    ),
    max_leaves=25,
)
PIPELINES = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 1, 2, "1"])},
    optional={
        "vars": st.dictionaries(
            st.sampled_from(["a", "b", "item", "bad name"]), VALUES, max_size=3
        ),
        "providers": st.dictionaries(
            st.sampled_from(["p", "q"]),
            st.fixed_dictionaries({"kind": st.sampled_from(["fake", "openai", "nope"])}),
            max_size=2,
        ),
        "steps": st.dictionaries(
            st.sampled_from(["a", "b", "c", "bad name"]),
            st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5),
            max_size=3,
        ),
    },
)


def dump(document: Any) -> str:
    stream = io.StringIO()
    YAML(typ="safe").dump(document, stream)
    return stream.getvalue()


def load_text(text: str) -> LoadedPipeline | None:
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "orch.yaml"
        file.write_text(text, encoding="utf-8")
        try:
            pipeline = load(file, environ={})
            graph.build(pipeline)
        except OrchError as exc:
            assert exc.render()
            event("rejected")
            return None
        event("loaded")
        return pipeline


COMMON = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(PIPELINES)
def test_pipeline_shaped_documents_load_or_raise_orch_errors(document: dict[str, Any]) -> None:
    load_text(dump(document))


@COMMON
@given(VALUES)
def test_arbitrary_documents_load_or_raise_orch_errors(document: Any) -> None:
    load_text(dump(document))


@COMMON
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}'\"\n #&*!|>%@`\t1")), max_size=40))
def test_arbitrary_text_loads_or_raises_orch_errors(text: str) -> None:
    load_text(text)

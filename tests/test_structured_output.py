"""`extract: json` with a `schema` asks each kind for that schema the way it supports it, and
still checks the reply: OpenAI `response_format: json_schema`, Anthropic a forced tool call,
Ollama `format`. The request bodies are what the real loopback server recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .buildkit import Project
from .llm_server import LlmServer
from .test_provider_options import valid_body
from .test_providers import provider, write_orch

OPEN = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}
CLOSED = {**OPEN, "additionalProperties": False}
LIST = {"type": "array", "items": {"type": "string"}}


def build(
    project: Project, server: LlmServer, kind: str, schema: Any, **fields: Any
) -> dict[str, Any]:
    """Build one `extract: json` step; the body of its one request."""
    step = {"prompt": "Give the title.", "extract": "json", "schema": schema, **fields}
    write_orch(project, {"t": {**step, "output": "t.json"}}, {"p": provider(server, kind)})
    result = project.orch("build")
    assert result.exit_code == 0, result.stdout + result.stderr
    (request,) = server.requests
    assert request.body is not None
    return request.body


def test_openai_gets_a_strict_json_schema_when_the_schema_allows_it(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = '{"title": "Notes"}'
    body = valid_body("openai", build(project, llm_server, "openai", CLOSED))
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": CLOSED, "strict": True},
    }
    assert json.loads(project.read("t.json")) == {"title": "Notes"}


def test_openai_gets_a_best_effort_schema_when_strict_mode_would_refuse_it(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = '{"title": "Notes"}'
    body = valid_body("openai", build(project, llm_server, "openai", OPEN))
    assert body["response_format"]["json_schema"]["strict"] is False


def test_openai_gets_no_format_for_a_schema_whose_root_is_not_an_object(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = '["a", "b"]'
    body = build(project, llm_server, "openai", LIST)
    assert "response_format" not in body
    assert json.loads(project.read("t.json")) == ["a", "b"]


def test_anthropic_is_made_to_answer_through_a_tool_with_the_schema(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = '{"title": "Notes"}'
    body = valid_body("anthropic", build(project, llm_server, "anthropic", OPEN))
    assert body["tools"] == [
        {"name": "orch_output", "description": "Give the reply.", "input_schema": OPEN}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "orch_output"}
    assert json.loads(project.read("t.json")) == {"title": "Notes"}


def test_anthropic_gets_a_schema_whose_root_is_not_an_object_wrapped(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = '{"value": ["a", "b"]}'
    body = build(project, llm_server, "anthropic", LIST)
    (tool,) = body["tools"]
    assert tool["name"] == "orch_output_value"
    assert tool["input_schema"]["properties"] == {"value": LIST}
    assert json.loads(project.read("t.json")) == ["a", "b"]


def test_ollama_gets_the_schema_as_its_format(project: Project, llm_server: LlmServer) -> None:
    llm_server.reply = '{"title": "Notes"}'
    body = valid_body("ollama", build(project, llm_server, "ollama", OPEN))
    assert body["format"] == OPEN


@pytest.mark.parametrize(
    ("kind", "option", "value"),
    [("openai", "response_format", {"type": "json_object"}), ("ollama", "format", "json")],
)
def test_a_format_the_step_sets_itself_wins(
    project: Project, llm_server: LlmServer, kind: str, option: str, value: Any
) -> None:
    llm_server.reply = '{"title": "Notes"}'
    body = build(project, llm_server, kind, OPEN, options={option: value})
    assert body[option] == value


def test_a_reply_is_still_checked_against_the_schema(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = '{"name": "Notes"}'
    step = {"prompt": "Give it.", "extract": "json", "schema": OPEN, "output": "t.json"}
    write_orch(project, {"t": {**step, "repair": 0}}, {"p": provider(llm_server, "anthropic")})
    result = project.orch("build")
    assert result.exit_code == 1
    assert "'title' is a required property" in result.stdout
    assert not project.exists("t.json")

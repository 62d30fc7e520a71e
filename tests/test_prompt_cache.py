"""Prompt caching: `cache: true` on a message and `cache_system: true` put Anthropic's
`cache_control` where the cache may end, other kinds get plain messages, the key does not
change, and tokens written to the cache are priced at their own rate."""

from __future__ import annotations

from typing import Any

import pytest

from .buildkit import Project
from .llm_server import LlmServer, status
from .test_providers import provider, write_orch

CONTEXT = "A long shared context. " * 20
QUESTION = {"role": "user", "content": "Review main.py."}
STEP: dict[str, Any] = {
    "system": "You review code.",
    "cache_system": True,
    "messages": [
        {"role": "user", "content": CONTEXT, "cache": True},
        {"role": "user", "content": "Review main.py."},
    ],
    "output": "review.md",
}
EPHEMERAL = {"type": "ephemeral"}


def request_body(project: Project, server: LlmServer, kind: str, step: dict[str, Any]) -> Any:
    write_orch(project, {"review": step}, {"p": provider(server, kind)})
    result = project.orch("build")
    assert result.exit_code == 0, result.stdout + result.stderr
    return server.requests[-1].body


def test_anthropic_gets_cache_control_on_the_system_and_the_marked_message(
    project: Project, llm_server: LlmServer
) -> None:
    body = request_body(project, llm_server, "anthropic", STEP)
    assert body["system"] == [
        {"type": "text", "text": "You review code.", "cache_control": EPHEMERAL}
    ]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": CONTEXT, "cache_control": EPHEMERAL}],
        },
        {"role": "user", "content": "Review main.py."},
    ]


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_other_kinds_get_plain_messages(project: Project, llm_server: LlmServer, kind: str) -> None:
    body = request_body(project, llm_server, kind, STEP)
    assert body["messages"] == [
        {"role": "system", "content": "You review code."},
        {"role": "user", "content": CONTEXT},
        {"role": "user", "content": "Review main.py."},
    ]


def test_cache_hints_are_not_part_of_the_key(project: Project, llm_server: LlmServer) -> None:
    plain = {**STEP, "cache_system": False, "messages": [QUESTION]}
    request_body(project, llm_server, "anthropic", plain)
    hinted = {**plain, "cache_system": True, "messages": [{**QUESTION, "cache": True}]}
    write_orch(project, {"review": hinted}, {"p": provider(llm_server, "anthropic")})
    again = project.orch("build")
    assert again.exit_code == 0
    assert again.started() == [], "the step is up to date"
    assert llm_server.count == 1


def test_tokens_written_to_the_cache_are_priced_at_their_own_rate(
    project: Project, llm_server: LlmServer
) -> None:
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 50,
        "output_tokens": 20,
    }
    reply = {"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage}
    llm_server.script(status(200, body=reply))
    price = {"input": 3.0, "output": 15.0, "cached": 0.3}
    step = {"prompt": "Review.", "output": "review.md"}
    write_orch(project, {"review": step}, {"p": provider(llm_server, "anthropic", price=price)})
    result = project.orch("build")
    assert result.exit_code == 0, result.stdout + result.stderr
    meta = result.manifest()["steps"]["review"]["meta"]
    assert meta["tokens"] == {"input": 160, "output": 20, "cached": 50, "cache_write": 100}
    expected = 10 * 3.0 + 100 * 3.0 * 1.25 + 50 * 0.3 + 20 * 15.0
    assert meta["cost"] == pytest.approx(expected / 1_000_000)
    assert result.manifest()["usage"]["tokens"]["cache_write"] == 100

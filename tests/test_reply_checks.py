"""Replies that cannot be used never cost more than one call, and never land in the cache: a
refusal, a reply of tool calls only, a stream of events, a reply cut off by its token limit.
A cut-off reply may be continued (`on_truncated: continue`), and a reply that gives no outputs
is shown to the model once more to be corrected (`repair`).

Each case counts the requests the real loopback server saw.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .buildkit import Build, Project
from .llm_server import Fault, LlmServer, status
from .test_providers import failure, provider, write_orch

PROMPT = "MARK write the page"


def openai_reply(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    usage = {"prompt_tokens": 5, "completion_tokens": 7}
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


def anthropic_reply(text: str, stop: str) -> dict[str, Any]:
    content = [{"type": "text", "text": text}] if text else []
    usage = {"input_tokens": 5, "output_tokens": 7}
    return {"type": "message", "content": content, "stop_reason": stop, "usage": usage}


def ollama_reply(text: str, done: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {"message": message, "done": True, "done_reason": done, "eval_count": 7}


def build_one(project: Project, server: LlmServer, kind: str = "openai", **fields: Any) -> Build:
    step = {"prompt": PROMPT, "output": "out/page.md", **fields}
    write_orch(project, {"page": step}, {"p": provider(server, kind, max_retries=3)})
    return project.orch("build")


def refused_at_once(
    project: Project, server: LlmServer, build: Build, kind: str, fault: Fault
) -> str:
    """The step failed with `kind` after one request (each answered with `fault`), wrote
    nothing, cached nothing."""
    assert build.exit_code == 1, build.stdout + build.stderr
    assert server.count == 1, "one request: the same request would fail the same way"
    assert not project.exists("out/page.md")
    assert build.events("llm.retry") == []
    found = failure(build, "page")
    assert found["kind"] == kind
    server.reset()
    server.always(fault)
    again = project.orch("build")
    assert again.exit_code == 1 and server.count == 1, "nothing of it was cached"
    return found["message"]


# --------------------------------------------------------------------------- refused at once


CASES = {
    "openai refusal": (
        "openai",
        openai_reply({"role": "assistant", "content": None, "refusal": "I can't help."}),
        "refusal",
        "the model refused to answer (finish reason 'stop'): I can't help.",
    ),
    "openai content filter": (
        "openai",
        openai_reply({"role": "assistant", "content": ""}, "content_filter"),
        "refusal",
        "the model refused to answer (finish reason 'content_filter')",
    ),
    "openai tool calls only": (
        "openai",
        openai_reply(
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}, "tool_calls"
        ),
        "unexpected_reply",
        "the reply holds only tool calls, no text (finish reason 'tool_calls')",
    ),
    "openai cut off": (
        "openai",
        openai_reply({"role": "assistant", "content": "The page st"}, "length"),
        "truncated",
        "the reply was cut off (finish reason 'length', max_tokens 64); raise the limit, or set"
        " 'on_truncated: continue' to ask for the rest",
    ),
    "anthropic refusal": (
        "anthropic",
        anthropic_reply("", "refusal"),
        "refusal",
        "the model refused to answer (finish reason 'refusal')",
    ),
    "anthropic cut off": (
        "anthropic",
        anthropic_reply("The page st", "max_tokens"),
        "truncated",
        "the reply was cut off (finish reason 'max_tokens', max_tokens 64)",
    ),
    "anthropic paused turn": (
        "anthropic",
        anthropic_reply("Searching", "pause_turn"),
        "truncated",
        "the reply was cut off (finish reason 'pause_turn', max_tokens 64)",
    ),
    "anthropic tool use only": (
        "anthropic",
        {
            "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}],
            "stop_reason": "tool_use",
            "usage": {},
        },
        "unexpected_reply",
        "the reply holds only tool calls",
    ),
    "ollama cut off": (
        "ollama",
        ollama_reply("The page st", "length"),
        "truncated",
        "the reply was cut off (finish reason 'length', max_tokens 64)",
    ),
}


@pytest.mark.parametrize(("kind", "payload", "error", "message"), CASES.values(), ids=CASES)
def test_a_reply_that_cannot_be_used_fails_after_one_request(
    project: Project, llm_server: LlmServer, kind: str, payload: Any, error: str, message: str
) -> None:
    fault = status(200, body=payload)
    llm_server.always(fault)
    build = build_one(project, llm_server, kind, options={"max_tokens": 64})
    assert message in refused_at_once(project, llm_server, build, error, fault)


def test_a_stream_of_events_fails_after_one_request(
    project: Project, llm_server: LlmServer
) -> None:
    chunk = json.dumps(openai_reply({"role": "assistant", "content": "hi"}))
    stream = f"data: {chunk}\n\ndata: [DONE]\n\n".encode()
    fault = status(200, {"Content-Type": "text/event-stream"}, stream)
    llm_server.always(fault)
    build = build_one(project, llm_server)
    message = refused_at_once(project, llm_server, build, "unexpected_reply", fault)
    assert "a stream of events (text/event-stream), not one JSON reply" in message


# --------------------------------------------------------------------------- continued


def test_a_cut_off_reply_is_continued_and_the_parts_joined(
    project: Project, llm_server: LlmServer
) -> None:
    cut = openai_reply({"role": "assistant", "content": "The page st"}, "length")
    llm_server.script(status(200, body=cut))
    llm_server.reply = "arts here."
    build = build_one(project, llm_server, on_truncated="continue")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert project.read("out/page.md") == "The page starts here."
    first, then = llm_server.requests
    assert first.body is not None and then.body is not None
    assert then.body["messages"][:-2] == first.body["messages"]
    assert then.body["messages"][-2] == {"role": "assistant", "content": "The page st"}
    assert "Continue exactly where it stopped" in then.body["messages"][-1]["content"]
    (followup,) = build.events("llm.followup", "page")
    assert followup["data"]["reason"] == "truncated"
    meta = build.manifest()["steps"]["page"]["meta"]
    assert meta["calls"] == 2
    assert meta["tokens"]["output"] == 7 + 2, "both calls' tokens"


def test_continuing_stops_after_four_more_calls(project: Project, llm_server: LlmServer) -> None:
    llm_server.always(status(200, body=ollama_reply("more ", "length")))
    build = build_one(project, llm_server, "ollama", on_truncated="continue")
    assert build.exit_code == 1
    assert failure(build, "page")["kind"] == "truncated"
    assert llm_server.count == 5
    assert not project.exists("out/page.md")


def test_on_truncated_is_part_of_the_key(project: Project, llm_server: LlmServer) -> None:
    assert build_one(project, llm_server).exit_code == 0
    llm_server.reset()
    assert build_one(project, llm_server, on_truncated="continue").exit_code == 0
    assert llm_server.count == 1, "joined parts are another output than one reply"


# --------------------------------------------------------------------------- repaired

SCHEMA = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}


def test_a_reply_that_breaks_the_schema_is_repaired_by_a_second_call(
    project: Project, llm_server: LlmServer
) -> None:
    def reply(fmt: str, body: dict[str, Any]) -> str:
        asked = str(body["messages"][-1]["content"])
        return '{"title": "Notes"}' if "could not be used" in asked else '{"name": "Notes"}'

    llm_server.reply = reply
    build = build_one(project, llm_server, extract="json", schema=SCHEMA)
    assert build.exit_code == 0, build.stdout + build.stderr
    assert json.loads(project.read("out/page.md")) == {"title": "Notes"}
    assert llm_server.count == 2
    repair = llm_server.requests[1].body
    assert repair is not None
    assert "does not match the schema" in repair["messages"][-1]["content"]
    (followup,) = build.events("llm.followup", "page")
    assert followup["data"]["reason"] == "repair"
    assert build.manifest()["steps"]["page"]["meta"]["calls"] == 2
    llm_server.reset()
    assert project.orch("build").exit_code == 0 and llm_server.count == 0


def test_a_spent_repair_budget_fails_without_caching(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = '{"name": "Notes"}'
    build = build_one(project, llm_server, extract="json", schema=SCHEMA, repair=2)
    assert build.exit_code == 1
    assert failure(build, "page")["kind"] == "extract"
    assert llm_server.count == 3
    assert [e["data"]["followup"] for e in build.events("llm.followup")] == [1, 2]
    assert not project.exists("out/page.md")
    llm_server.reset()
    assert project.orch("build").exit_code == 1 and llm_server.count == 3, "nothing cached"

"""Anthropic's Messages API: `POST {base_url}/v1/messages` with `x-api-key`,
`anthropic-version`, a top-level `system` and the required `max_tokens`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orchestrator.language.options import translate
from orchestrator.providers.base import ChatRequest, Reply, Usage
from orchestrator.providers.wire import field, invalid, join, number, with_custom

API_VERSION = "2023-06-01"
OUTPUT_TOOL = "orch_output"
"""The tool whose input is a structured reply."""
WRAPPED_OUTPUT_TOOL = "orch_output_value"
"""The same, for a schema whose root is not an object: the reply is the input's `value`."""


class AnthropicWire:
    """The Messages wire format."""

    kind = "anthropic"

    def __init__(self, custom: Mapping[str, str] | None = None) -> None:
        self.custom = dict(custom or {})

    def url(self, base_url: str, model: str | None) -> str:
        return join(base_url, "/v1/messages")

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return with_custom(headers, self.custom)

    def body(self, request: ChatRequest) -> dict[str, Any]:
        options = translate(self.kind, request.options)
        body: dict[str, Any] = {**options, "model": request.model}
        system = request.system_text()
        cached_system = request.cache_system or any(
            request.messages[i]["role"] == "system" for i in request.cache_points
        )
        if system:
            body["system"] = _cached(system) if cached_system else system
        body["messages"] = [
            {"role": m["role"], "content": _cached(m["content"])}
            if i in request.cache_points
            else dict(m)
            for i, m in enumerate(request.messages)
            if m["role"] != "system"
        ]
        return body

    def structured(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """A tool whose input is the reply, and the model made to call it; a schema whose root
        is not an object is wrapped in one (`{"value": ...}`), unwrapped again in `parse`."""
        if schema.get("type") == "object":
            name, input_schema = OUTPUT_TOOL, dict(schema)
        else:
            name = WRAPPED_OUTPUT_TOOL
            wrapped = {"value": dict(schema)}
            input_schema = {"type": "object", "properties": wrapped, "required": ["value"]}
        tool = {"name": name, "description": "Give the reply.", "input_schema": input_schema}
        return {"tools": [tool], "tool_choice": {"type": "tool", "name": name}}

    def parse(self, payload: Any) -> Reply:
        blocks = field(payload, "content", list)
        output = _tool_output(blocks)
        texts = [
            b["text"]
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        reason = payload.get("stop_reason")
        ending = ENDINGS.get(reason, "complete")
        if output is not None and ending in ("complete", "tool_use"):
            texts, ending = [output], "complete"
        if not texts and ending == "complete":
            tools = any(isinstance(b, dict) and b.get("type") == "tool_use" for b in blocks)
            if not tools:
                raise invalid("the reply has no text content")
            ending = "tool_use"
        usage = payload.get("usage")
        cached = number(usage, "cache_read_input_tokens")
        written = number(usage, "cache_creation_input_tokens")
        return Reply(
            text="".join(texts),
            finish_reason=reason,
            usage=Usage(
                input=number(usage, "input_tokens") + cached + written,
                output=number(usage, "output_tokens"),
                cached=cached,
                written=written,
            ),
            raw=payload,
            ending=ending,
            refusal=("".join(texts) or None) if ending == "refusal" else None,
        )


ENDINGS = {
    "max_tokens": "truncated",
    "model_context_window_exceeded": "truncated",
    "pause_turn": "truncated",
    "refusal": "refusal",
    "tool_use": "tool_use",
}
"""`stop_reason` values that are not a complete reply, as `Reply.ending` names them."""


def _cached(text: str) -> list[dict[str, Any]]:
    """Text as one block the prompt cache may end at."""
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]


def _tool_output(blocks: list[Any]) -> str | None:
    """A structured reply given as the input of orch's output tool, as JSON text."""
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            continue
        value = block.get("input")
        if block.get("name") == OUTPUT_TOOL:
            return json.dumps(value, ensure_ascii=False)
        if block.get("name") == WRAPPED_OUTPUT_TOOL and isinstance(value, dict):
            return json.dumps(value.get("value"), ensure_ascii=False)
    return None

"""OpenAI chat completions, and every server that speaks them (vLLM, llama.cpp, LM Studio,
`mlx_lm.server`, Ollama's `/v1`): `POST {base_url}/chat/completions`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.language.options import translate
from orchestrator.providers.base import ChatRequest, Reply, Usage
from orchestrator.providers.wire import field, invalid, join, number, with_custom


class OpenAIWire:
    """The chat-completions wire format."""

    kind = "openai"

    def __init__(self, custom: Mapping[str, str] | None = None) -> None:
        self.custom = dict(custom or {})

    def url(self, base_url: str, model: str | None) -> str:
        return join(base_url, "/chat/completions")

    def headers(self, api_key: str | None) -> dict[str, str]:
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        return with_custom(auth, self.custom)

    def body(self, request: ChatRequest) -> dict[str, Any]:
        options = translate(self.kind, request.options)
        return {**options, "model": request.model, "messages": request.chat()}

    def structured(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """`response_format: json_schema`, strict when the schema allows it; the format takes
        only an object at the root, so another schema is left to the prompt and the check."""
        if schema.get("type") != "object":
            return {}
        spec = {"name": "output", "schema": dict(schema), "strict": strict_ready(schema)}
        return {"response_format": {"type": "json_schema", "json_schema": spec}}

    def parse(self, payload: Any) -> Reply:
        choices = field(payload, "choices", list)
        if not choices:
            raise invalid("the reply has no choices")
        choice = choices[0]
        message = field(choice, "message", dict)
        reason = choice.get("finish_reason")
        content = message.get("content")
        refusal = message.get("refusal")
        ending = ENDINGS.get(reason, "complete")
        if isinstance(refusal, str) and refusal:
            ending = "refusal"
        elif not isinstance(content, str):
            if message.get("tool_calls"):
                ending = "tool_use"
            elif ending == "complete":
                raise invalid("the reply's message has no text content")
        usage = payload.get("usage")
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        return Reply(
            text=content if isinstance(content, str) else "",
            finish_reason=reason,
            usage=Usage(
                input=number(usage, "prompt_tokens"),
                output=number(usage, "completion_tokens"),
                cached=number(details, "cached_tokens"),
            ),
            raw=payload,
            ending=ending,
            refusal=refusal if isinstance(refusal, str) and refusal else None,
        )


ENDINGS = {"length": "truncated", "content_filter": "refusal", "tool_calls": "tool_use"}
"""`finish_reason` values that are not a complete reply, as `Reply.ending` names them."""


def strict_ready(schema: Any) -> bool:
    """Whether OpenAI's strict mode takes `schema` as it is: every object closed
    (`additionalProperties: false`) with every property required."""
    if isinstance(schema, list):
        return all(strict_ready(item) for item in schema)
    if not isinstance(schema, Mapping):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        if not isinstance(properties, Mapping) or set(schema.get("required", [])) != set(
            properties
        ):
            return False
    return all(strict_ready(value) for value in schema.values())

"""Ollama's native chat API: `POST {base_url}/api/chat` without streaming.

Ollama can answer 200 with `{"error": ...}` instead of a message; that is a server failure
and is retried like a 5xx. Top-level request fields (format, keep_alive, think, tools, truncate,
shift, logprobs, top_logprobs) stay at the top; every other option goes under `options`
(temperature, num_ctx, seed, `max_tokens` as num_predict, ...): see `language/options.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.language.options import translate
from orchestrator.providers.base import ChatRequest, ProviderError, Reply, Usage
from orchestrator.providers.wire import field, invalid, join, number, with_custom


class OllamaWire:
    """The native /api/chat wire format."""

    kind = "ollama"

    def __init__(self, custom: Mapping[str, str] | None = None) -> None:
        self.custom = dict(custom or {})

    def url(self, base_url: str, model: str | None) -> str:
        return join(base_url, "/api/chat")

    def headers(self, api_key: str | None) -> dict[str, str]:
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        return with_custom(auth, self.custom)

    def body(self, request: ChatRequest) -> dict[str, Any]:
        fields = translate(self.kind, request.options)
        return {**fields, "model": request.model, "messages": request.chat(), "stream": False}

    def structured(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """Ollama's `format` takes a JSON Schema."""
        return {"format": dict(schema)}

    def parse(self, payload: Any) -> Reply:
        if isinstance(payload, dict) and payload.get("error"):
            raise ProviderError("server", f"the server replied with an error: {payload['error']}")
        message = field(payload, "message", dict)
        content = message.get("content")
        reason = payload.get("done_reason")
        ending = "truncated" if reason == "length" else "complete"
        if not isinstance(content, str) or (not content and message.get("tool_calls")):
            if not message.get("tool_calls"):
                raise invalid("the reply's message has no text content")
            content, ending = "", "tool_use"
        return Reply(
            text=content,
            finish_reason=reason,
            usage=Usage(
                input=number(payload, "prompt_eval_count"), output=number(payload, "eval_count")
            ),
            raw=payload,
            ending=ending,
        )

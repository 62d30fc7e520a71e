"""Anthropic's Messages API: `POST {base_url}/v1/messages` with `x-api-key`,
`anthropic-version`, a top-level `system` and the required `max_tokens`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.language.options import translate
from orchestrator.providers.base import ChatRequest, Reply, Usage
from orchestrator.providers.wire import field, invalid, join, number, with_custom

API_VERSION = "2023-06-01"


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
        if system:
            body["system"] = system
        body["messages"] = [dict(m) for m in request.messages if m["role"] != "system"]
        return body

    def parse(self, payload: Any) -> Reply:
        blocks = field(payload, "content", list)
        texts = [
            b["text"]
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        if not texts:
            raise invalid("the reply has no text content")
        usage = payload.get("usage")
        cached = number(usage, "cache_read_input_tokens")
        written = number(usage, "cache_creation_input_tokens")
        return Reply(
            text="".join(texts),
            finish_reason=payload.get("stop_reason"),
            usage=Usage(
                input=number(usage, "input_tokens") + cached + written,
                output=number(usage, "output_tokens"),
                cached=cached,
            ),
            raw=payload,
        )

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

    def parse(self, payload: Any) -> Reply:
        choices = field(payload, "choices", list)
        if not choices:
            raise invalid("the reply has no choices")
        choice = choices[0]
        message = field(choice, "message", dict)
        content = message.get("content")
        if not isinstance(content, str):
            raise invalid("the reply's message has no text content")
        usage = payload.get("usage")
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        return Reply(
            text=content,
            finish_reason=choice.get("finish_reason"),
            usage=Usage(
                input=number(usage, "prompt_tokens"),
                output=number(usage, "completion_tokens"),
                cached=number(details, "cached_tokens"),
            ),
            raw=payload,
        )

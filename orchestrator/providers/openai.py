"""OpenAI chat completions, and every server that speaks them (vLLM, llama.cpp, LM Studio,
`mlx_lm.server`, Ollama's `/v1`): `POST {base_url}/chat/completions`."""

from __future__ import annotations

from typing import Any

from orchestrator.providers.base import ChatRequest, Reply, Usage
from orchestrator.providers.wire import field, invalid, number


class OpenAIWire:
    """The chat-completions wire format."""

    kind = "openai"

    def url(self, base_url: str) -> str:
        return f"{base_url}/chat/completions"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def body(self, request: ChatRequest) -> dict[str, Any]:
        return {**request.options, "model": request.model, "messages": request.chat()}

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

"""A build's spending limit (`orch build --max-cost`): each priced call reserves the most it may
cost before it goes out, and is refused when what was spent, what is in flight and that most
would pass the limit.

The most a call may cost: its input tokens (counted with tiktoken for OpenAI models when the
library and its encoding are at hand, else about 4 characters per token) at the input price,
plus its output limit (`max_tokens`, `max_completion_tokens` or `num_predict`; 1,024 tokens
when the request sets none) at the output price.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.providers.base import ChatRequest, ProviderError, Usage

if TYPE_CHECKING:
    from orchestrator.language.spec import Price

CHARS_PER_TOKEN = 4
DEFAULT_OUTPUT_TOKENS = 1024
OUTPUT_LIMITS = ("max_tokens", "max_completion_tokens", "num_predict")


def input_tokens(request: ChatRequest, kind: str) -> int:
    """The tokens of the request's text: system, messages and schema."""
    parts = [request.system_text() or "", *(m["content"] for m in request.chat())]
    if request.schema is not None:
        parts.append(json.dumps(request.schema))
    text = "\n".join(parts)
    counted = _tiktoken_count(text, request.model) if kind == "openai" else None
    return counted if counted is not None else -(-len(text) // CHARS_PER_TOKEN)


def output_limit(options: Mapping[str, Any]) -> tuple[str, int] | None:
    """The option that bounds a reply's length, and its value, if the options set one (Ollama's
    `num_predict` may sit under `options`)."""
    nested = options.get("options")
    for source in (options, nested if isinstance(nested, Mapping) else {}):
        for name in OUTPUT_LIMITS:
            value = source.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return name, value
    return None


def output_tokens(options: Mapping[str, Any]) -> int:
    """The output limit the options set, or the default estimate."""
    found = output_limit(options)
    return DEFAULT_OUTPUT_TOKENS if found is None else found[1]


def tokens_cost(tokens_in: int, tokens_out: int, price: Price) -> float:
    """What fresh input and output tokens cost at `price` per million."""
    return Usage(input=tokens_in, output=tokens_out).cost(price)


def most_cost(request: ChatRequest, kind: str, price: Price) -> float:
    """The most a call may cost, at `price` per million tokens."""
    return tokens_cost(input_tokens(request, kind), output_tokens(request.options), price)


def _tiktoken_count(text: str, model: str | None) -> int | None:
    """The exact count for an OpenAI model, when tiktoken and its encoding can be loaded."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        encoding = tiktoken.encoding_for_model(model or "")
    except Exception:  # unknown model, or the encoding cannot be fetched (offline)
        return None
    return len(encoding.encode(text, disallowed_special=()))


@dataclass
class Budget:
    """What a build may spend, what it spent, and what calls in flight may still cost."""

    limit: float
    spent: float = 0.0
    in_flight: float = 0.0

    def reserve(self, most: float) -> None:
        """Hold `most` for a call about to go out; ProviderError `budget` when it would pass
        the limit (no call goes out then)."""
        if self.spent + self.in_flight + most > self.limit:
            raise ProviderError(
                "budget",
                f"the build's budget of {self.limit:g} (--max-cost) would be passed:"
                f" {self.spent:.4f} spent, {self.in_flight:.4f} in flight, and this call may"
                f" cost up to {most:.4f}; raise --max-cost to build the rest",
                retry=False,
            )
        self.in_flight += most

    def settle(self, most: float, cost: float) -> None:
        """A call ended: release what it held, count what it cost."""
        self.in_flight = max(0.0, self.in_flight - most)
        self.spent += cost

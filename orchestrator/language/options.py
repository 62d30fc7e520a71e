"""Request options across provider kinds: the common names, where each kind sends them, and the
ones a kind cannot honour.

A common option (`temperature`, `top_p`, `top_k`, `max_tokens`, `stop`, `seed`,
`frequency_penalty`, `presence_penalty`, `response_format`) is written once and sent under the
name each API knows it by; any other option is the kind's own and is sent as written. Ollama takes
the model parameters under `options` and a few fields at the top of the body. An option a kind
has no field for is refused when the pipeline is planned, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

COMMON = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
)
"""Options every pipeline may write the same way whatever the provider's kind."""

OLLAMA_TOP_LEVEL = frozenset(
    {"format", "keep_alive", "think", "tools", "truncate", "shift", "logprobs", "top_logprobs"}
)
"""Fields of Ollama's /api/chat body itself; every other Ollama option is a model parameter."""

RENAMED: dict[str, dict[str, str]] = {
    "anthropic": {"stop": "stop_sequences"},
    "ollama": {"max_tokens": "num_predict"},
}
"""Common option → the kind's own name for it."""

REFUSED: dict[str, dict[str, str]] = {
    "anthropic": {
        "seed": "the Messages API has no seed",
        "response_format": "ask for JSON in the prompt and use 'extract: json' with a 'schema'",
        "frequency_penalty": "the Messages API has no frequency penalty",
        "presence_penalty": "the Messages API has no presence penalty",
        "logit_bias": "the Messages API has no logit bias",
        "logprobs": "the Messages API gives no log probabilities",
        "top_logprobs": "the Messages API gives no log probabilities",
        "n": "the Messages API gives one reply per call",
    },
    "ollama": {
        "response_format": "use Ollama's 'format' ('json' or a JSON Schema)",
        "logit_bias": "Ollama has no logit bias",
        "n": "Ollama gives one reply per call",
        "tool_choice": "Ollama has no tool choice",
    },
}
"""Options a kind cannot honour, with what to do instead."""

MOVED: dict[str, frozenset[str]] = {
    "anthropic": frozenset({"stop"}),
    "ollama": frozenset({"max_tokens", "truncate", "shift", "logprobs", "top_logprobs"}),
}
"""Options sent elsewhere than orch 0.1 sent them (renamed, or moved out of Ollama's
`options`): a step that sets one is keyed with where it goes now, so it runs again."""

SAME_AS = {"azure": "openai"}
"""Kinds that take another kind's options."""


@dataclass(frozen=True)
class Refusal:
    """An option a kind cannot honour."""

    option: str
    kind: str
    hint: str

    def __str__(self) -> str:
        return f"option '{self.option}' is not supported by {self.kind} providers: {self.hint}"


def _family(kind: str) -> str:
    return SAME_AS.get(kind, kind)


def refusals(kind: str, options: Mapping[str, Any]) -> list[Refusal]:
    """The options in `options` that `kind` cannot honour, or that name one field twice."""
    family = _family(kind)
    refused = REFUSED.get(family, {})
    found = [Refusal(name, kind, refused[name]) for name in options if name in refused]
    for common, own in RENAMED.get(family, {}).items():
        if common in options and own in options:
            found.append(Refusal(common, kind, f"'{own}' is given too; keep one of the two"))
    return found


def wire_name(kind: str, option: str) -> str:
    """Where an option goes in the request of `kind`: `name`, or `options.name` (Ollama)."""
    family = _family(kind)
    name = RENAMED.get(family, {}).get(option, option)
    if family == "ollama" and name not in OLLAMA_TOP_LEVEL:
        return f"options.{name}"
    return name


def moved(kind: str, options: Mapping[str, Any]) -> dict[str, str]:
    """The options sent elsewhere than orch 0.1 sent them, with where they go now."""
    names = MOVED.get(_family(kind), frozenset())
    return {name: wire_name(kind, name) for name in sorted(options) if name in names}


def translate(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields `options` become for `kind` (Ollama's model parameters nested under
    `options`). Refused options are checked at plan time; any left here are not sent."""
    refused = REFUSED.get(_family(kind), {})
    body: dict[str, Any] = {}
    for name, value in options.items():
        if name in refused:
            continue
        place = wire_name(kind, name)
        if place == "stop_sequences" and isinstance(value, str):
            value = [value]
        outer, dot, inner = place.partition(".")
        if dot:
            body.setdefault(outer, {})[inner] = value
        else:
            body[place] = value
    return body

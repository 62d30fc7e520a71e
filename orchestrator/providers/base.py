"""The protocol every provider kind speaks: a chat request in, a reply with normalised usage out.

    ProviderError(StepFailed)   a call that did not give a reply; `kind` is one of KINDS

A provider never raises anything else: transport and parsing errors are wrapped with a kind and
a message a person understands, and API keys are never part of either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.core.errors import StepFailed

if TYPE_CHECKING:
    from orchestrator.language.spec import Price

KINDS = (
    "timeout",
    "rate_limit",
    "server",
    "client",
    "connection",
    "invalid_response",
    "circuit_breaker",
    "offline",
    "refusal",
    "truncated",
    "unexpected_reply",
    "budget",
)
RETRYABLE = frozenset({"timeout", "rate_limit", "server", "connection", "invalid_response"})


class ProviderError(StepFailed):
    """A provider call that failed; `retry` says whether another attempt may help."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retry: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(kind, message)
        self.retry = kind in RETRYABLE if retry is None else retry
        self.retry_after = retry_after
        """Seconds the server asked us to wait before the next attempt, when it said."""


@dataclass(frozen=True)
class ChatRequest:
    """What an llm step asks: messages (role and content), a model and request options."""

    messages: tuple[Mapping[str, str], ...]
    model: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    system: str | None = None
    timeout_s: float | None = None
    """The step's own per-request timeout, instead of the provider's."""
    schema: Mapping[str, Any] | None = None
    """The JSON Schema the reply must satisfy, sent the way the kind supports it."""
    cache_points: frozenset[int] = frozenset()
    """Indexes of `messages` the prompt cache may end at (kinds that take hints)."""
    cache_system: bool = False
    """Whether the system text may be cached (kinds that take hints)."""

    def system_text(self) -> str | None:
        """The step's `system` and any system messages, joined."""
        parts = [self.system] if self.system else []
        parts += [m["content"] for m in self.messages if m["role"] == "system"]
        return "\n\n".join(parts) if parts else None

    def chat(self) -> list[dict[str, str]]:
        """The messages with the system text first, as chat-completion servers take them."""
        system = self.system_text()
        rest = [dict(m) for m in self.messages if m["role"] != "system"]
        return [{"role": "system", "content": system}, *rest] if system else rest


CACHE_WRITE_RATE = 1.25
"""Cache writes cost this times the input price unless the price says otherwise (Anthropic's
5-minute cache)."""


BATCH_RATE = 0.5
"""What a request answered through a provider's batch API costs, as a share of its price."""


@dataclass(frozen=True)
class Usage:
    """Tokens of one or more calls: input (cached and cache-written ones included), output,
    input read from the prompt cache, and input written to it."""

    input: int = 0
    output: int = 0
    cached: int = 0
    written: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cached + other.cached,
            self.written + other.written,
        )

    def cost(self, price: Price) -> float:
        """The price of these tokens; cached and cache-written input at their own prices."""
        cached_price = price.input if price.cached is None else price.cached
        written_price = price.cache_write
        if written_price is None:
            written_price = price.input * CACHE_WRITE_RATE
        fresh = self.input - self.cached - self.written
        total = (
            fresh * price.input
            + self.cached * cached_price
            + self.written * written_price
            + self.output * price.output
        )
        return round(total / 1_000_000, 10)

    def cost_of(self, price: Price, batched: bool) -> float:
        """`cost`, at the batch APIs' half price when a batch answered."""
        full = self.cost(price)
        return round(full * BATCH_RATE, 10) if batched else full

    def as_dict(self) -> dict[str, int]:
        """For events and the manifest (`cache_write` only when there was any)."""
        counts = {"input": self.input, "output": self.output, "cached": self.cached}
        if self.written:
            counts["cache_write"] = self.written
        return counts


ENDINGS = ("complete", "truncated", "refusal", "tool_use")
"""How a reply ended, whatever the kind calls it: done; cut off (a token limit, a paused
turn); refused (the model's refusal, a content filter); only tool calls, no text."""


@dataclass(frozen=True)
class Reply:
    """A model's answer."""

    text: str
    finish_reason: str | None
    usage: Usage
    raw: Any = None
    """The decoded response payload, as the server sent it."""
    attempts: int = 1
    ending: str = "complete"
    """One of ENDINGS."""
    refusal: str | None = None
    """What the model said when it refused, when it said something."""
    batch: str | None = None
    """The id of the provider batch that answered (`--batch`), which costs half price."""


class Emit(Protocol):
    """Records an event about the calling step (`StepContext.emit`)."""

    def __call__(self, type: str, level: str = "info", **data: Any) -> None: ...


@dataclass(frozen=True)
class Call:
    """Who is calling: the step (the fake provider finds its reply by it) and its event sink."""

    step: str
    group: str
    emit: Emit


class ProviderClient(Protocol):
    """A configured provider of one kind."""

    name: str
    kind: str

    async def complete(self, request: ChatRequest, call: Call) -> Reply:
        """Send one request (with retries where the kind has them); raise ProviderError."""
        ...

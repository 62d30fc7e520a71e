"""The calls behind one llm step: the request (to the step's provider, or to its fallbacks in
turn while it is unavailable), then follow-ups when the reply cannot be used as it came: cut
off (`on_truncated: continue` asks the model to go on, and the parts are joined) or not giving
the outputs (`repair` shows the model what was wrong and asks again).

A reply that is refused, holds only tool calls, or is cut off without `continue` fails the
step at once: another identical request would most likely fail the same way, and be paid again.
Nothing of such a reply is written or cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import StepFailed

if TYPE_CHECKING:
    from orchestrator.language.spec import Price
    from orchestrator.providers import Call, ChatRequest, Reply, Usage
    from orchestrator.providers.base import ProviderClient
    from orchestrator.providers.budget import Budget

MAX_CONTINUATIONS = 4
"""Follow-up calls one reply may take with `on_truncated: continue`."""
CONTINUE = (
    "Your reply was cut off. Continue exactly where it stopped, without repeating anything"
    " and without any preamble."
)
REPAIR = (
    "Your reply could not be used: {problem}. Reply again in full, with this corrected,"
    " in the same form as asked."
)
UNAVAILABLE = frozenset({"circuit_breaker", "server", "rate_limit", "connection", "timeout"})
"""Failures that say the provider is not there now, after its retries: a fallback may answer."""
_EXCERPT = 200


@dataclass(frozen=True)
class Route:
    """A provider a step may ask, with the model and options it asks it with."""

    name: str
    client: ProviderClient
    model: str | None
    options: Mapping[str, Any]
    price: Price | None = None


@dataclass
class Conversation:
    """One step's calls to its providers, with what they cost together. The first route is
    the step's provider; the others are asked in turn once it is unavailable."""

    routes: Sequence[Route]
    call: Call
    on_reply: Callable[[Reply], Awaitable[None]]
    """Called with each reply as it comes (the step's log keeps them)."""
    usage: Usage | None = None
    cost: float | None = None
    """The price of every reply, for routes that have one."""
    calls: int = 0
    followups: dict[str, int] = field(default_factory=dict)
    """Follow-up calls so far, by reason."""
    last: Reply | None = None
    current: int = 0
    """The route asked now: a fallback stays in use for the step's later calls."""
    budget: Budget | None = None
    """The build's spending limit, if it has one."""
    batch: str | None = None
    """The provider batch that answered the step, under `--batch`."""

    @property
    def route(self) -> Route:
        return self.routes[self.current]

    async def ask(self, request: ChatRequest) -> Reply:
        """One call (retries aside), counted; the next route when this one is unavailable."""
        while True:
            route = self.route
            try:
                reply = await self._priced(route, _via(request, route))
                break
            except StepFailed as failure:
                self.calls += int(failure.meta.get("calls", 0))
                if failure.kind not in UNAVAILABLE or self.current + 1 >= len(self.routes):
                    raise
                self._fall_back(failure)
        self.calls += reply.attempts
        self.usage = reply.usage if self.usage is None else self.usage + reply.usage
        if route.price is not None:
            self.cost = (self.cost or 0.0) + reply.usage.cost_of(route.price, bool(reply.batch))
        if reply.batch is not None:
            self.batch = reply.batch
        self.last = reply
        await self.on_reply(reply)
        return reply

    async def _priced(self, route: Route, request: ChatRequest) -> Reply:
        """The call, within the build's budget: the most it may cost is held while it is in
        flight, and what it cost is counted when it ends."""
        if self.budget is None or route.price is None:
            return await route.client.complete(request, self.call)
        from orchestrator.providers.budget import most_cost

        most = most_cost(request, route.client.kind, route.price)
        self.budget.reserve(most)
        cost = 0.0
        try:
            reply = await route.client.complete(request, self.call)
            cost = reply.usage.cost_of(route.price, bool(reply.batch))
            return reply
        finally:
            self.budget.settle(most, cost)

    def _fall_back(self, failure: StepFailed) -> None:
        before = self.route
        self.current += 1
        self.call.emit(
            "llm.fallback",
            "warning",
            provider=before.name,
            model=before.model,
            to=self.route.name,
            kind=failure.kind,
            message=failure.message,
        )

    async def text(self, request: ChatRequest, on_truncated: str) -> str:
        """The whole text of the reply to `request`: continued while it is cut off and the step
        says so; StepFailed for a reply that cannot be used."""
        reply = await self.ask(request)
        text = reply.text
        while reply.ending == "truncated" and on_truncated == "continue":
            if self.followups.get("truncated", 0) >= MAX_CONTINUATIONS:
                break
            self.follow_up("truncated", truncated_message(reply, request))
            reply = await self.ask(continued(request, text))
            text += reply.text
        problem = reply_problem(reply, request)
        if problem is not None:
            raise problem
        return text

    def follow_up(self, reason: str, message: str) -> None:
        """Record that another call follows, and why."""
        self.followups[reason] = self.followups.get(reason, 0) + 1
        self.call.emit(
            "llm.followup",
            "warning",
            provider=self.route.name,
            model=self.route.model,
            reason=reason,
            message=message,
            followup=sum(self.followups.values()),
        )


def _via(request: ChatRequest, route: Route) -> ChatRequest:
    """The request as it goes to `route`: with its model and options."""
    if request.model == route.model and request.options == route.options:
        return request
    return replace(request, model=route.model, options=route.options)


def reply_problem(reply: Reply, request: ChatRequest) -> StepFailed | None:
    """Why a reply cannot be used at all, if it cannot: refused, only tool calls, cut off."""
    reason = f"finish reason '{reply.finish_reason}'"
    if reply.ending == "refusal":
        said = f": {_excerpt(reply.refusal)}" if reply.refusal else ""
        return StepFailed("refusal", f"the model refused to answer ({reason}){said}")
    if reply.ending == "tool_use":
        return StepFailed(
            "unexpected_reply",
            f"the reply holds only tool calls, no text ({reason}); an llm step takes text",
        )
    if reply.ending == "truncated":
        return StepFailed(
            "truncated",
            truncated_message(reply, request)
            + "; raise the limit, or set 'on_truncated: continue' to ask for the rest",
        )
    return None


def truncated_message(reply: Reply, request: ChatRequest) -> str:
    """What cut a reply off: the finish reason and the limit the request set, if any."""
    from orchestrator.providers.budget import output_limit

    found = output_limit(request.options)
    limit = "" if found is None else f", {found[0]} {found[1]}"
    return f"the reply was cut off (finish reason '{reply.finish_reason}'{limit})"


def continued(request: ChatRequest, partial: str) -> ChatRequest:
    """The request again, with the reply so far and a request to go on."""
    return _followed(request, partial, CONTINUE)


def repaired(request: ChatRequest, reply: str, problem: str) -> ChatRequest:
    """The request again, with the unusable reply and what was wrong with it."""
    return _followed(request, reply, REPAIR.format(problem=problem))


def _followed(request: ChatRequest, reply: str, ask: str) -> ChatRequest:
    messages: tuple[Any, ...] = (
        *request.messages,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": ask},
    )
    return replace(request, messages=messages)


def _excerpt(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"

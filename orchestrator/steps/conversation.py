"""The calls behind one llm step: the request, then follow-ups when the reply cannot be used as
it came: cut off (`on_truncated: continue` asks the model to go on, and the parts are joined) or
not giving the outputs (`repair` shows the model what was wrong and asks again).

A reply that is refused, holds only tool calls, or is cut off without `continue` fails the
step at once: another identical request would most likely fail the same way, and be paid again.
Nothing of such a reply is written or cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import StepFailed

if TYPE_CHECKING:
    from orchestrator.providers import Call, ChatRequest, Reply, Usage
    from orchestrator.providers.base import ProviderClient

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
LIMITS = ("max_tokens", "max_completion_tokens", "num_predict")
"""Options that bound a reply's length, named in the message of a cut-off reply."""
_EXCERPT = 200


@dataclass
class Conversation:
    """One step's calls to its provider, with what they cost together."""

    provider: ProviderClient
    call: Call
    on_reply: Callable[[Reply], Awaitable[None]]
    """Called with each reply as it comes (the step's log keeps them)."""
    usage: Usage | None = None
    calls: int = 0
    followups: dict[str, int] = field(default_factory=dict)
    """Follow-up calls so far, by reason."""
    last: Reply | None = None

    async def ask(self, request: ChatRequest) -> Reply:
        """One call (retries aside), counted."""
        try:
            reply = await self.provider.complete(request, self.call)
        except StepFailed as failure:
            self.calls += int(failure.meta.get("calls", 0))
            raise
        self.calls += reply.attempts
        self.usage = reply.usage if self.usage is None else self.usage + reply.usage
        self.last = reply
        await self.on_reply(reply)
        return reply

    async def text(self, request: ChatRequest, on_truncated: str) -> str:
        """The whole text of the reply to `request`: continued while it is cut off and the step
        says so; StepFailed for a reply that cannot be used."""
        reply = await self.ask(request)
        text = reply.text
        while reply.ending == "truncated" and on_truncated == "continue":
            if self.followups.get("truncated", 0) >= MAX_CONTINUATIONS:
                break
            self.follow_up("truncated", truncated_message(reply, request), request.model)
            reply = await self.ask(continued(request, text))
            text += reply.text
        problem = reply_problem(reply, request)
        if problem is not None:
            raise problem
        return text

    def follow_up(self, reason: str, message: str, model: str | None) -> None:
        """Record that another call follows, and why."""
        self.followups[reason] = self.followups.get(reason, 0) + 1
        self.call.emit(
            "llm.followup",
            "warning",
            provider=self.provider.name,
            model=model,
            reason=reason,
            message=message,
            followup=sum(self.followups.values()),
        )


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
    limits = [f"{name} {request.options[name]}" for name in LIMITS if name in request.options]
    nested = request.options.get("options")
    if isinstance(nested, dict) and "num_predict" in nested:
        limits.append(f"num_predict {nested['num_predict']}")
    limit = f", {limits[0]}" if limits else ""
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

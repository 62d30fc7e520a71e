"""What the llm steps a build would run may cost, for `orch status` and `orch build --dry-run`:
each step's request rendered with its inputs as they are (as written when an input is not there
yet), its tokens counted as `--max-cost` counts them, at its provider's price."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.language.pipeline import LoadedPipeline, Step


@dataclass(frozen=True)
class Estimate:
    """The llm calls a build would make: one per step, follow-ups and retries aside."""

    steps: int
    input_tokens: int
    output_tokens: int
    """The most the replies may hold: each step's output limit."""
    cost: float | None
    """The most the calls may cost, over the steps whose provider has a price (None: none)."""
    rendered: bool
    """Whether every request could be rendered now; else some prompts count as written."""

    def line(self) -> str:
        """One line for people."""
        approx = "" if self.rendered else " (some prompts as written: their inputs are not built)"
        cost = "" if self.cost is None else f", at most {self.cost:.4f} by the providers' prices"
        calls = "step would call" if self.steps == 1 else "steps would call"
        return (
            f"llm: {self.steps} {calls} a model: about {self.input_tokens:,} input tokens"
            f"{approx}, up to {self.output_tokens:,} output tokens{cost}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": None if self.cost is None else round(self.cost, 10),
            "rendered": self.rendered,
        }


def estimate(pipeline: LoadedPipeline, step_ids: Iterable[str]) -> Estimate | None:
    """The estimate for the llm steps among `step_ids`; None when there is none."""
    steps = [pipeline.steps[s] for s in step_ids if pipeline.steps[s].kind == "llm"]
    if not steps:
        return None
    tokens_in = tokens_out = 0
    cost: float | None = None
    rendered = True
    for step in steps:
        found_in, found_out, found_cost, whole = _one(pipeline, step)
        tokens_in, tokens_out, rendered = (
            tokens_in + found_in,
            tokens_out + found_out,
            rendered and whole,
        )
        if found_cost is not None:
            cost = (cost or 0.0) + found_cost
    return Estimate(len(steps), tokens_in, tokens_out, cost, rendered)


def _one(pipeline: LoadedPipeline, step: Step) -> tuple[int, int, float | None, bool]:
    """A step's input and output tokens, its most cost, and whether its request rendered."""
    from orchestrator.providers.budget import input_tokens, output_tokens, tokens_cost
    from orchestrator.providers.config import resolve
    from orchestrator.record.events import EventLog
    from orchestrator.steps import StepContext
    from orchestrator.steps.llm import draft

    nowhere = Path(os.devnull)
    context = StepContext(pipeline, step, nowhere, nowhere, EventLog("estimate"))
    request, whole = draft(context)
    assert step.provider is not None
    settings = resolve(step.provider, pipeline.providers[step.provider], pipeline.env)
    tokens_in, tokens_out = input_tokens(request, settings.kind), output_tokens(request.options)
    price = settings.price
    cost = None if price is None else tokens_cost(tokens_in, tokens_out, price)
    return tokens_in, tokens_out, cost, whole

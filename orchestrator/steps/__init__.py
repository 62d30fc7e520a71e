"""Step kinds, one module each and one `Kind` record per module: its planner says which fields
are structure and which are content (and checks them) at plan time; its executor runs one step
given a `StepContext` and returns an `Outcome`; `written_by_orch` names the outputs orch writes
itself from what the step produced (the others its command writes).

`StepContext`, `Outcome` and `Executor` are imported from `base` on first use: importing this
package does not pull in asyncio."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import StepFailed

if TYPE_CHECKING:
    from orchestrator.language.pipeline import Step
    from orchestrator.plan.expansion import StepPlanning
    from orchestrator.steps.base import Executor, Outcome, StepContext

Planner = Callable[["StepPlanning"], tuple[dict[str, Any], str | None]]


def every_output(step: Step) -> tuple[str, ...]:
    """All of a step's outputs: what orch writes for kinds whose executor produces the bytes."""
    return step.outputs


@dataclass(frozen=True)
class Kind:
    """Everything orch knows about one step kind."""

    plan: Planner
    execute: Executor
    written_by_orch: Callable[[Step], tuple[str, ...]] = every_output
    runs_commands: bool = False
    """Whether its executor starts the user's commands, which may write anywhere: the build
    checks after such a step that no other step's outputs changed."""


@functools.cache
def kinds() -> dict[str, Kind]:
    """Every step kind by name (imported when first needed)."""
    from orchestrator.steps import llm, shell, template

    return {"shell": shell.KIND, "template": template.KIND, "llm": llm.KIND}


def __getattr__(name: str) -> Any:
    """`Executor`, `Outcome` and `StepContext`, imported from `base` when first asked for."""
    if name not in ("Executor", "Outcome", "StepContext"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(".base", __name__), name)


__all__ = ["Executor", "Kind", "Outcome", "Planner", "StepContext", "StepFailed", "kinds"]

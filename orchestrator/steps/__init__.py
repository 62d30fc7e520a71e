"""Step kinds, one module each: its planner says which fields are structure and which are
content (and checks them) at plan time; its executor runs one step given a `StepContext` and
returns an `Outcome`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import StepFailed
from .base import Executor, Outcome, StepContext

if TYPE_CHECKING:
    from ..expansion import StepPlanning

Planner = Callable[["StepPlanning"], tuple[dict[str, Any], str | None]]


@functools.cache
def executors() -> dict[str, Executor]:
    """The executor of each step kind that can run (imported when first needed)."""
    from . import llm, shell, template

    return {"shell": shell.execute, "template": template.execute, "llm": llm.execute}


@functools.cache
def planners() -> dict[str, Planner]:
    """The planner of each step kind: its definition and provider from its fields."""
    from . import llm, shell, template

    return {"shell": shell.plan, "template": template.plan, "llm": llm.plan}


__all__ = ["Executor", "Outcome", "Planner", "StepContext", "StepFailed", "executors", "planners"]

"""Step kinds: each runs one step given a `StepContext` and returns an `Outcome`."""

from __future__ import annotations

import functools

from ..errors import StepFailed
from .base import Executor, Outcome, StepContext


@functools.cache
def executors() -> dict[str, Executor]:
    """The executor of each step kind that can run (imported when first needed)."""
    from . import llm, shell, template

    return {"shell": shell.execute, "template": template.execute, "llm": llm.execute}


__all__ = ["Executor", "Outcome", "StepContext", "StepFailed", "executors"]

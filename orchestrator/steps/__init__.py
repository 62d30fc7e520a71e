"""Step kinds, one module each and one `Kind` record per module: its planner says which fields
are structure and which are content (and checks them) at plan time; its executor runs one step
given a `StepContext` and returns an `Outcome`; `written_by_orch` names the outputs orch writes
itself from what the step produced (the others its command writes).

`StepContext`, `Outcome` and `Executor` are imported from `base` on first use: importing this
package does not pull in asyncio."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.core.errors import StepFailed

if TYPE_CHECKING:
    from orchestrator.core.errors import PipelineError
    from orchestrator.language.pipeline import Step
    from orchestrator.language.source import PathKey
    from orchestrator.language.spec import Language, Provider, StepBase
    from orchestrator.steps.base import Executor, Outcome, StepContext
    from orchestrator.steps.commands import Command


class Planning(Protocol):
    """What a kind's planner gets for one step at plan time (the plan layer implements it).

    Structure fields are rendered now (`structure`, `path`, `input_file`); content fields are
    kept as source and their references enter the key (`content`, `content_file`)."""

    step_id: str
    group: str
    spec: StepBase
    providers: Mapping[str, Provider]
    default_provider: str | None
    workdir: Path
    label: str
    outputs: list[str]
    extra_inputs: list[str]
    fallbacks: list[str]
    """Providers to try, in order, when the step's own is unavailable (llm steps)."""
    """Inputs the step does not render with (a fake provider's reply file)."""
    pipeline_env: Mapping[str, str]
    """The pipeline's top-level `env`, as written."""

    def structure(self, field: tuple[PathKey, ...], value: Any) -> Any: ...
    def path(self, field: tuple[PathKey, ...], text: str) -> str: ...
    def input_file(self, field: tuple[PathKey, ...], text: str) -> str: ...
    def content(self, field: tuple[PathKey, ...], value: Any, *, pipeline: bool = False) -> Any: ...
    def content_file(self, field: tuple[PathKey, ...], path: str) -> None: ...
    def is_file(self, path: str) -> bool: ...
    def require_one_output(self) -> None: ...
    def fail(
        self, message: str, field: tuple[PathKey, ...] = (), *, key: bool = False
    ) -> PipelineError: ...


Planner = Callable[[Planning], tuple[dict[str, Any], str | None]]


def every_output(step: Step) -> tuple[str, ...]:
    """All of a step's outputs: what orch writes for kinds whose executor produces the bytes."""
    return step.outputs


@dataclass(frozen=True)
class Kind:
    """Everything orch knows about one step kind."""

    model: type[StepBase]
    """The pydantic model of the step as written: `kind: Literal[name]`, its fields, `KEYS`."""
    plan: Planner
    execute: Executor
    written_by_orch: Callable[[Step], tuple[str, ...]] = every_output
    runs_commands: bool = False
    """Whether its executor starts the user's commands, which may write anywhere: the build
    checks after such a step that no other step's outputs changed."""
    ready: Callable[[Step], Command | None] | None = None
    """The command a step runs, when it needs no rendering: kept in the saved plan, it lets a
    build run the step without loading the pipeline (see `commands`)."""


@functools.cache
def kinds() -> dict[str, Kind]:
    """Every step kind by name (imported when first needed)."""
    from orchestrator.steps import llm, shell, template

    return {"shell": shell.KIND, "llm": llm.KIND, "template": template.KIND}


@functools.cache
def language() -> Language:
    """The pipeline language over every step kind."""
    from orchestrator.language.spec import Language

    return Language({name: kind.model for name, kind in kinds().items()})


def __getattr__(name: str) -> Any:
    """`Executor`, `Outcome` and `StepContext`, imported from `base` when first asked for."""
    if name not in ("Executor", "Outcome", "StepContext"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(".base", __name__), name)


__all__ = [
    "Executor",
    "Kind",
    "Outcome",
    "Planner",
    "Planning",
    "StepContext",
    "StepFailed",
    "kinds",
    "language",
]

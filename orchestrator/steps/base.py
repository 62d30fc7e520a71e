"""What every step kind shares: the context an executor runs in, its outcome, its failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StepFailed, TemplateError
from ..filestore import WriteRefused, WriteResult, safe_write
from ..templating import READ_PLACEHOLDER, Reader, Renderer

if TYPE_CHECKING:
    from ..events import EventLog
    from ..pipeline import LoadedPipeline, Step


@dataclass
class Outcome:
    """What a step did: the files orch wrote for it and metadata for the manifest and cache."""

    written: list[WriteResult] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """Everything an executor needs to run one step."""

    pipeline: LoadedPipeline
    step: Step
    log: Path
    scratch: Path
    """A folder of the step's own for temporary files (created by the executor that needs it)."""
    events: EventLog
    renderer: Renderer = field(default_factory=Renderer)

    @property
    def workdir(self) -> Path:
        """The folder every path is relative to."""
        return self.pipeline.workdir

    def emit(self, type: str, level: str = "info", **data: Any) -> None:
        """Record an event about this step."""
        self.events.emit(type, self.step.id, level, **data)

    def runtime(self, value: Any, planned: Any) -> Any:
        """A field rendered with real `read()` contents; the planned value when it read nothing."""
        if _PLACEHOLDER_MARK not in repr(planned):
            return planned
        from ..settings import context_for

        context = context_for(self.pipeline, self.step, Reader(self.step.inputs, self.workdir))
        try:
            return self.renderer.render_value(value, context)
        except TemplateError as exc:
            raise StepFailed("template", str(exc)) from exc

    def write(self, path: str, content: bytes | str) -> WriteResult:
        """Write one output through `safe_write` and record `file.written`."""
        try:
            result = safe_write(self.workdir, path, content)
        except WriteRefused as exc:
            raise StepFailed("refused", str(exc)) from exc
        self.emit("file.written", **result.as_event_data())
        return result


_PLACEHOLDER_MARK = READ_PLACEHOLDER.split("{", 1)[0]

Executor = Callable[[StepContext], Awaitable[Outcome]]
Executors = Mapping[str, Executor]

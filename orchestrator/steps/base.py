"""What every step kind shares: the context an executor runs in, its outcome, its failure."""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import StepFailed, TemplateError, describe_os_error
from orchestrator.language.templating import Reader, Renderer
from orchestrator.store.filestore import (
    WriteRefused,
    WriteResult,
    confined,
    confined_makedirs,
    safe_write,
    safe_write_file,
)

if TYPE_CHECKING:
    from orchestrator.language.pipeline import LoadedPipeline, Step
    from orchestrator.providers import Providers
    from orchestrator.record.events import EventLog


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
    providers: Callable[[], Providers] | None = None
    """The build's providers, created when a step first needs one."""
    others: tuple[str, ...] = ()
    """Outputs of other steps inside this step's output folders."""
    sandboxed: bool = False
    """Whether commands may write only where the step's outputs go (`orch build --sandbox`)."""
    output: Callable[[str], None] | None = None
    """Given each line of the step's output as it is written (`orch build -v`), if set."""

    @property
    def workdir(self) -> Path:
        """The folder every path is relative to."""
        return self.pipeline.workdir

    def emit(self, type: str, level: str = "info", **data: Any) -> None:
        """Record an event about this step."""
        self.events.emit(type, self.step.id, level, **data)

    def render(self, value: Any) -> Any:
        """Content (a string, or strings inside lists and mappings) rendered in the step's
        scope with the real contents of its inputs."""
        try:
            return self.renderer.render_value(value, self._context())
        except TemplateError as exc:
            raise StepFailed("template", str(exc)) from exc

    def render_file(self, path: str) -> str:
        """A template file among the inputs, rendered in the step's scope."""
        try:
            text = (self.workdir / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StepFailed("template", f"cannot read template '{path}': {exc}") from exc
        try:
            return self.renderer.render(text, self._context())
        except TemplateError as exc:
            hint = ""
            if "env" not in self.step.scope and str(exc) == "undefined variable 'env'":
                hint = " (a template file another step writes cannot use env: pass it in a var)"
            raise StepFailed("template", f"in {path}: {exc}{hint}") from exc

    def _context(self) -> dict[str, Any]:
        read = Reader(self.step.inputs, self.workdir, self.step.excludes)
        return {**self.step.scope, "read": read}

    def write(self, path: str, content: bytes | str) -> WriteResult:
        """Write one output through `safe_write` and record `file.written`."""
        (result,) = _write_all(self.workdir, {path: content})
        self.emit("file.written", **result.as_event_data())
        return result

    async def write_all(self, contents: Mapping[str, bytes | str]) -> list[WriteResult]:
        """Write several outputs in a worker thread, then record a `file.written` for each."""
        results = await asyncio.to_thread(_write_all, self.workdir, contents)
        for result in results:
            self.emit("file.written", **result.as_event_data())
        return results


def make_output_folders(workdir: Path, outputs: tuple[str, ...]) -> None:
    """Make the folders that hold `outputs`, inside the workdir only; the folders are not
    outputs themselves."""
    folders = {posixpath.dirname(path.rstrip("/")): path for path in outputs}
    for folder, output in sorted(folders.items()):
        if not folder:
            continue
        with _refusals_fail():
            try:
                confined_makedirs(workdir, folder, output)
            except OSError as exc:
                why = describe_os_error(exc, "make the folder", Path(folder))
                raise StepFailed("io", why) from exc


def write_output_file(workdir: Path, path: str, source: Path) -> WriteResult:
    """Write one output from the file `source`, streamed through `safe_write_file`; a refused
    write fails the step."""
    with _refusals_fail():
        return safe_write_file(workdir, path, source)


def _write_all(workdir: Path, contents: Mapping[str, bytes | str]) -> list[WriteResult]:
    with _refusals_fail():
        for path in contents:
            confined(workdir, path)  # refuse before writing anything
        return [safe_write(workdir, path, content) for path, content in contents.items()]


@contextmanager
def _refusals_fail() -> Iterator[None]:
    """A write refused inside fails the step as `refused`."""
    try:
        yield
    except WriteRefused as exc:
        raise StepFailed("refused", str(exc)) from exc


Executor = Callable[[StepContext], Awaitable[Outcome]]

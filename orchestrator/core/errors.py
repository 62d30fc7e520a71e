"""The one exception tree of orch.

    OrchError                  anything orch reports to a person; the CLI maps it to an exit code
    ├── PipelineError          the pipeline is invalid (exit 2); carries one or more Diagnostics
    ├── TemplateError          a template failed to render (wrapped into a PipelineError at load)
    ├── UsageError             the command line asks for something impossible (exit 2)
    ├── StepFailed             a step did not produce its outputs; recorded, never shown raw
    └── IoFailure              orch could not write one of its own files (exit 1)

Library code raises these and never prints; `cli.py` renders them. Third-party errors are wrapped
with ``raise ... from exc`` so that no foreign exception reaches the user.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Location:
    """A 1-based line and column in a file."""

    file: Path
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a pipeline, with where it is when that is known."""

    message: str
    location: Location | None = None
    file: Path | None = None
    hint: str | None = None
    """One sentence on how to fix it, shown last as ``hint: …``."""

    def as_json(self) -> dict[str, object]:
        """`file`, `line`, `col` (null where unknown), `message` and `hint`."""
        where = self.location
        file = where.file if where is not None else self.file
        return {
            "file": None if file is None else str(file),
            "line": None if where is None else where.line,
            "col": None if where is None else where.col,
            "message": self.message,
            "hint": self.hint,
        }

    def render(self) -> str:
        """Format as ``file:line:col: message`` followed by the source line, a caret and the
        hint."""
        if self.location is None:
            prefix = f"{self.file}: " if self.file else ""
            head = f"{prefix}{self.message}"
        else:
            head = f"{self.location}: {self.message}"
            excerpt = _source_excerpt(self.location)
            head = f"{head}\n{excerpt}" if excerpt else head
        return head if self.hint is None else f"{head}\nhint: {self.hint}"


def _source_excerpt(location: Location) -> str:
    try:
        lines = location.file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    if not 1 <= location.line <= len(lines):
        return ""
    text = lines[location.line - 1].expandtabs(1)
    caret = " " * (max(location.col, 1) - 1) + "^"
    return f"  {text}\n  {caret}"


class OrchError(Exception):
    """Base of every error orch reports to a person."""

    exit_code = 1

    def render(self) -> str:
        """The text shown to the user."""
        return str(self)


class UsageError(OrchError):
    """The command line asks for something that cannot be done."""

    exit_code = 2


class PipelineError(OrchError):
    """The pipeline is invalid; holds every diagnostic found."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.message for d in diagnostics))

    @classmethod
    def at(cls, message: str, location: Location | None, file: Path | None = None) -> PipelineError:
        """A single-diagnostic error."""
        return cls([Diagnostic(message, location, file)])

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


class TemplateError(OrchError):
    """A template could not be rendered; the loader adds where it stands."""


class StepFailed(OrchError):
    """A step did not produce its outputs; `kind` says why (exit, timeout, missing_output, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.meta: dict[str, Any] = {}
        """What the step used before failing (provider calls, tokens), for the manifest."""
        self.details: dict[str, Any] = {}
        """More for its `step.failed` event: the `excerpt` of a failed command's log."""


class IoFailure(OrchError):
    """An OSError (disk full, permission denied, ...) met while orch wrote its own files."""

    def __init__(self, action: str, error: OSError, path: Path | None = None) -> None:
        super().__init__(f"orch: {describe_os_error(error, action, path)}")
        self.action = action
        self.error = error


def describe_os_error(error: OSError, action: str | None = None, path: Path | None = None) -> str:
    """One line: ``cannot ACTION: PATH: REASON`` (the parts that are known).

    PATH is `path` when given (the file orch meant, not a temp file beside it), else the error's.
    """
    parts = []
    if action:
        parts.append(f"cannot {action}")
    where = path if path is not None else error.filename
    if where is not None:
        parts.append(str(where))
    parts.append(error.strerror or str(error) or type(error).__name__)
    return ": ".join(parts)


@contextmanager
def io_failure(action: str, path: Path | None = None) -> Iterator[None]:
    """Turn an OSError raised inside into an `IoFailure` saying what orch was doing to `path`."""
    try:
        yield
    except OSError as exc:
        raise IoFailure(action, exc, path) from exc

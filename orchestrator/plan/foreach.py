"""`foreach`: one step per item of a list, a mapping, an expression's value or a glob's
matches, named `group@item` (`group@key` for a mapping, `group@index` for an item that is not a
plain value)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.core.errors import PipelineError, TemplateError
from orchestrator.core.paths import (
    LiteralPath,
    PathRefused,
    expand_glob,
    is_glob,
    normalize,
    unescape,
)
from orchestrator.language.settings import fail_at
from orchestrator.language.source import SourceDocument
from orchestrator.language.templating import Renderer, forbidden_read

Instance = tuple[str, Any, Any]
"""A step id, its `item` and its `key` (None outside a mapping)."""


class Foreach:
    """Expands the `foreach` of each step, remembering what each glob matched."""

    def __init__(
        self, source: SourceDocument, renderer: Renderer, workdir: Path, base: Mapping[str, Any]
    ) -> None:
        self.source = source
        self.renderer = renderer
        self.workdir = workdir
        self.base = base
        self.globs: dict[str, list[str]] = {}

    def instances(self, group: str, foreach: Any) -> list[Instance]:
        """The steps a step's `foreach` gives (the step itself when it has none)."""
        if foreach is None:
            return [(group, None, None)]
        items = foreach
        if isinstance(items, str):
            items = self._evaluate(group, items)
        if isinstance(items, dict):
            return [(f"{group}@{key}", value, key) for key, value in items.items()]
        if isinstance(items, list | tuple):
            return [
                (f"{group}@{item if _is_scalar(item) else index}", item, None)
                for index, item in enumerate(items)
            ]
        raise self._fail(
            group,
            f"step '{group}': foreach must be a list, a mapping or a glob,"
            f" not {type(items).__name__}",
        )

    def empty_warning(self, group: str, foreach: Any) -> str:
        """A foreach that gives no step is likely a mistake: where its list came from."""
        what = "matched no files" if isinstance(foreach, str) and is_glob(foreach) else "is empty"
        origin = f" ('{foreach}')" if isinstance(foreach, str) else ""
        location = self.source.locate(("steps", group, "foreach"))
        return f"{location}: warning: step '{group}': foreach{origin} {what}, so it gives no steps"

    def _evaluate(self, group: str, text: str) -> Any:
        """An expression's value; text that is not one is a glob, or a single file name."""
        context = {**self.base, "read": forbidden_read("foreach")}
        try:
            value = self.renderer.evaluate(text, context)
        except TemplateError as exc:
            raise self._fail(group, f"step '{group}', field 'foreach': {exc}") from exc
        return self._glob(group, value) if isinstance(value, str) else value

    def _glob(self, group: str, pattern: str) -> list[LiteralPath]:
        try:
            normal = normalize(pattern)
        except PathRefused as exc:
            raise self._fail(group, f"step '{group}', field 'foreach': {exc}") from exc
        if not is_glob(normal):
            return [LiteralPath(unescape(normal))]
        self.globs[normal] = expand_glob(self.workdir, normal)
        return [LiteralPath(path) for path in self.globs[normal]]

    def _fail(self, group: str, message: str) -> PipelineError:
        return fail_at(message, self.source, ("steps", group, "foreach"))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)

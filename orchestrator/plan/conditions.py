"""`if`: whether a step instance is kept, decided at plan time from vars, env, item and key.

A condition is a template, like the structure fields, but it sees neither ``steps`` nor
``read()``: it decides which steps exist, so it comes before any step's outputs. Its value must
be boolean-like (`TRUE`, `FALSE`); anything else is an error, so that ``if: "{{ mode }}"`` with
``mode: fast`` is not silently true.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.core.errors import PipelineError, TemplateError
from orchestrator.language.settings import fail_at
from orchestrator.language.source import SourceDocument
from orchestrator.language.templating import Renderer, forbidden_read

TRUE = frozenset({"true", "yes", "on", "1"})
FALSE = frozenset({"false", "no", "off", "0", "", "none"})
"""Texts a condition may render to (case and surrounding blanks ignored)."""
_REFUSED = ("steps", "read")


class Conditions:
    """Evaluates the `if` of each step instance."""

    def __init__(self, source: SourceDocument, renderer: Renderer, base: Mapping[str, Any]) -> None:
        self.source = source
        self.renderer = renderer
        self.base = base

    def keeps(
        self, step_id: str, group: str, condition: str | bool | None, item: Any, key: Any
    ) -> bool:
        """Whether the instance `step_id` of `group` stays, or PipelineError at its `if`."""
        if condition is None or isinstance(condition, bool):
            return condition is not False
        try:
            self._refuse(condition)
            context = {**self.base, "item": item, "key": key, "read": forbidden_read("if")}
            value = self.renderer.evaluate(condition, context)
        except TemplateError as exc:
            raise self._fail(group, f"step '{step_id}', field 'if': {exc}") from exc
        truth = truth_of(value)
        if truth is None:
            raise self._fail(
                group,
                f"step '{step_id}', field 'if': gives {value!r}, which is neither true nor false"
                " (compare it: {{ x == 'y' }})",
            )
        return truth

    def _refuse(self, text: str) -> None:
        used = self.renderer.references(text).names
        for name in _REFUSED:
            if name in used:
                raise TemplateError(
                    f"'{name}' cannot be used here: a condition decides which steps exist,"
                    " before any step runs (it sees vars, env, item and key)"
                )

    def _fail(self, group: str, message: str) -> PipelineError:
        return fail_at(message, self.source, ("steps", group, "if"))


def truth_of(value: Any) -> bool | None:
    """True or False for a boolean-like value, None for anything else."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE:
            return True
        if word in FALSE:
            return False
    return None


def removed_reason(condition: str | bool | None) -> str:
    """Why a removed step is not in the plan, as `orch status` says it."""
    if isinstance(condition, bool):
        return "if: false"
    return f"if: {condition} is false"

"""Content templates: what a step's key takes from them at plan time, and their run-time context.

A step's content (its command, template text, prompt, system, messages, env values) is rendered
only when the step runs, with the real contents of its inputs. At plan time its templates are
parsed instead: the names they can reach (see `references`) select the part of the pipeline's
context they may see, the *scope*. The scope is both what the key hashes and the only context
the rendering gets, so two runs with equal keys render equal text: a name the analysis did not
find is undefined at run time rather than silently missing from the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.errors import TemplateError
from orchestrator.core.suggest import suggest
from orchestrator.language.references import WHOLE, References, Trie
from orchestrator.language.templating import StepsView
from orchestrator.store.digest import tagged

JINJA_GLOBALS = frozenset({"range", "dict", "cycler", "joiner", "namespace"})
"""Names the Jinja environment defines (the random `lipsum` is removed)."""


@dataclass(frozen=True)
class FullScope:
    """Everything a step's content could see: vars, environment, steps, item and paths."""

    vars: Mapping[str, Any]
    env: Mapping[str, str] | None
    """None where the environment is not available (a template file another step writes)."""
    step_names: Mapping[str, object]
    """Every step id and group name (a mapping, for quick lookups)."""
    outputs_of: Callable[[str], list[str]]
    item: Any
    key: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def restrict(self, refs: References) -> dict[str, Any]:
        """The part of the context the references reach, as the run-time rendering sees it."""
        self.check_defined(refs)
        scope: dict[str, Any] = {}
        for name in sorted(refs.names):
            if name in self.vars:
                scope[name] = _pick(self.vars[name], refs.used(name))
            elif name == "vars":
                scope["vars"] = dict(_pick(self.vars, refs.used("vars")))
            elif name == "env" and self.env is not None:
                scope["env"] = _members(self.env, refs.members.get("env", WHOLE))
            elif name == "steps":
                scope["steps"] = self._steps(refs.members.get("steps", WHOLE))
            elif name in ("item", "key", "inputs", "outputs"):
                value = getattr(self, name)
                scope[name] = list(value) if isinstance(value, tuple) else value
        return scope

    def check_defined(self, refs: References) -> None:
        """Refuse a name that nothing defines, unless the template guards it with `default`
        or `is defined`, or sets it on some branch."""
        known = {*self.vars, "vars", "steps", "item", "key", "inputs", "outputs", "read"}
        if self.env is not None:
            known.add("env")
        unknown = refs.names - known - JINJA_GLOBALS - refs.guarded - refs.assigned
        for name in sorted(unknown):
            if name == "env":
                raise TemplateError(
                    "env is not available in a template file another step writes;"
                    " pass the value through a var"
                )
            raise TemplateError(f"undefined variable '{name}'{suggest(name, known)}")

    def _steps(self, wanted: set[str] | None) -> StepsView:
        names = list(self.step_names) if wanted is WHOLE else sorted(wanted)
        outputs: dict[str, list[str]] = {}
        for name in names:
            if name not in self.step_names:
                raise TemplateError(
                    f"unknown step '{name}' in steps.{name}{suggest(name, self.step_names)}"
                )
            outputs[name] = self.outputs_of(name)
        return StepsView(outputs, outputs.__getitem__)


def _members(values: Mapping[str, Any], wanted: set[str] | None) -> dict[str, Any]:
    if wanted is WHOLE:
        return dict(values)
    return {name: values[name] for name in sorted(wanted) if name in values}


def _pick(value: Any, used: Trie) -> Any:
    """The parts of a value used: a mapping keeps only the keys used, at every depth."""
    if used is WHOLE or not isinstance(value, Mapping):
        return value
    return {key: _pick(item, used[key]) for key, item in value.items() if key in used}


def key_material(scope: Mapping[str, Any]) -> dict[str, Any]:
    """The scope as plain JSON data, for the step's key."""
    return {name: _plain(value) for name, value in scope.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, StepsView):
        return {name: _plain(value[name].outputs) for name in value.names}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return tagged(value)


def merged(found: Iterable[References]) -> References:
    """The references of several templates together."""
    total = References()
    for refs in found:
        total.update(refs)
    return total

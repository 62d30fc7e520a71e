"""Sandboxed Jinja rendering of pipeline strings, with the `read()` guard and orch's filters.

Every string in a pipeline may be a template. Undefined names are errors. `read(path)` is
allowed only for a step's declared inputs, and only in content rendered when the step runs.
The environment is deterministic: the random `lipsum` global and `random` filter are removed,
so that equal contexts always render equal text.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from orchestrator.core.errors import OrchError, TemplateError
from orchestrator.core.paths import (
    LiteralPath,
    PathRefused,
    covers,
    declared,
    escapes_through_symlink,
    is_dir,
    is_glob,
    normalize,
    selects,
    unescape,
)
from orchestrator.core.suggest import suggest
from orchestrator.language.limits import Limits, deadline
from orchestrator.language.references import References, find_references
from orchestrator.language.source import lone_surrogate

_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)


def is_template(text: str) -> bool:
    """Whether the string holds Jinja syntax (plain strings skip Jinja entirely)."""
    return any(marker in text for marker in _MARKERS)


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path.rstrip("/")))[0]


def _path_filter(part: Callable[[str], str]) -> Callable[[Any], str]:
    """A filter taking part of a path; the part of a `LiteralPath` is one too."""

    def apply(value: Any) -> str:
        found = part(str(value))
        return LiteralPath(found) if isinstance(value, LiteralPath) else found

    return apply


_FILTERS: dict[str, Callable[[Any], str]] = {
    "quote": lambda value: shlex.quote(str(value)),
    "literal": lambda value: LiteralPath(str(value)),
    "basename": _path_filter(lambda path: posixpath.basename(path.rstrip("/"))),
    "dirname": _path_filter(lambda path: posixpath.dirname(path.rstrip("/"))),
    "stem": _path_filter(_stem),
    "suffix": _path_filter(lambda path: posixpath.splitext(path.rstrip("/"))[1]),
}


class Renderer:
    """One sandboxed Jinja environment, with compiled templates cached by their text.

    A renderer for `paths` writes each `LiteralPath` a ``{{ }}`` gives escaped, so the name
    stays one file inside a longer path (`out/{{ item | basename }}`).
    """

    @cached_property
    def _env(self) -> Any:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        limits = self.limits

        class LimitedEnvironment(ImmutableSandboxedEnvironment):
            """The sandbox, with `*` and `**` checked before they build something huge."""

            intercepted_binops = frozenset({"*", "**"})

            def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
                limits.check_binop(operator, left, right)
                return super().call_binop(context, operator, left, right)

        env = LimitedEnvironment(
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            finalize=declared if self.paths else None,
        )
        env.filters.update(_FILTERS)
        del env.filters["random"]
        del env.globals["lipsum"]
        return env

    def __init__(self, limits: Limits | None = None, *, paths: bool = False) -> None:
        """`limits` bound each rendering (by default, those the environment sets)."""
        self.limits = limits or Limits.from_environment()
        self.paths = paths
        self._compiled: dict[str, Any] = {}
        self._expressions: dict[str, Any] = {}
        self._references: dict[str, References] = {}

    def references(self, text: str) -> References:
        """The names a template can reach (none for a plain string); syntax errors raise."""
        found = self._references.get(text)
        if found is None:
            if is_template(text):
                found = self._guard(lambda: find_references(self._env.parse(text)))
            else:
                found = References()
            self._references[text] = found
        return found

    def render(self, text: str, context: Mapping[str, Any]) -> str:
        """Render a template string; plain strings come back unchanged."""
        if not is_template(text):
            return text
        template = self._compiled.get(text)
        if template is None:
            template = self._guard(lambda: self._env.from_string(text))
            self._compiled[text] = template
        text = str(self._guard(lambda: self.limits.joined(template.generate(context))))
        return _text(text)

    def evaluate(self, text: str, context: Mapping[str, Any]) -> Any:
        """The native value of a lone ``{{ expression }}``; other strings are rendered."""
        match = _SINGLE_EXPRESSION.match(text)
        if match is None:
            return self.render(text, context)
        expression = self._expressions.get(text)
        if expression is None:
            source = match["expr"]
            expression = self._guard(
                lambda: self._env.compile_expression(source, undefined_to_none=False)
            )
            self._expressions[text] = expression
        value = self._guard(lambda: _strict(expression(**context)))
        return map_strings(value, _text)

    def render_value(self, value: Any, context: Mapping[str, Any]) -> Any:
        """Render every string inside nested lists and mappings."""
        return map_strings(value, lambda text: self.render(text, context))

    def evaluate_value(self, value: Any, context: Mapping[str, Any]) -> Any:
        """Like `render_value`, but a lone ``{{ expression }}`` keeps its native type."""
        return map_strings(value, lambda text: self.evaluate(text, context))

    def _guard(self, action: Callable[[], Any]) -> Any:
        from jinja2 import TemplateError as JinjaError
        from jinja2 import TemplateSyntaxError

        try:
            with deadline(self.limits.timeout_s):
                return action()
        except OrchError:
            raise
        except TemplateSyntaxError as exc:
            line = f" (line {exc.lineno} of the template)" if exc.lineno and exc.lineno > 1 else ""
            raise TemplateError(f"template syntax error: {exc.message}{line}") from exc
        except JinjaError as exc:
            raise TemplateError(describe_jinja_error(exc)) from exc
        except Exception as exc:
            raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from exc


def map_strings(value: Any, change: Callable[[str], Any]) -> Any:
    """`value` with `change` applied to every string inside nested lists and mappings."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [map_strings(item, change) for item in value]
    if isinstance(value, dict):
        return {k: map_strings(v, change) for k, v in value.items()}
    return value


def _text(text: str) -> str:
    """A rendered string, refused when it cannot be written as UTF-8."""
    surrogate = lone_surrogate(text)
    if surrogate:
        raise TemplateError(f"the template gives '{surrogate}', a lone surrogate, not a character")
    return text


def _strict(value: Any) -> Any:
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def describe_jinja_error(exc: Exception) -> str:
    """The message of a Jinja error, with undefined names said plainly."""
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    undefined = re.fullmatch(r"'([^']+)' is undefined", message)
    if undefined:
        return f"undefined variable '{undefined.group(1)}'"
    return message


class StepRef:
    """What a template sees as ``steps.<id>``: its rendered outputs."""

    def __init__(self, step_id: str, outputs: list[str]) -> None:
        self._id = step_id
        self.outputs = [LiteralPath(path) for path in outputs]

    @property
    def output(self) -> str:
        """The single output of the step."""
        if len(self.outputs) != 1:
            count = "no outputs" if not self.outputs else f"{len(self.outputs)} outputs"
            raise TemplateError(f"steps.{self._id}.output: the step has {count}; use .outputs")
        return self.outputs[0]


class StepsView:
    """The ``steps`` object of the template context, resolving step outputs on demand."""

    def __init__(
        self, names: Mapping[str, object] | Iterable[str], outputs_of: Callable[[str], list[str]]
    ) -> None:
        """`names` may be a mapping keyed by name, shared without copying (many steps use one)."""
        self._known = names if isinstance(names, Mapping) else dict.fromkeys(names)
        self._outputs_of = outputs_of

    @property
    def names(self) -> list[str]:
        """Every step id and group name it knows, in order."""
        return list(self._known)

    def __getitem__(self, name: str) -> StepRef:
        if name not in self._known:
            raise TemplateError(
                f"unknown step '{name}' in steps.{name}{suggest(name, self._known)}"
            )
        return StepRef(name, self._outputs_of(name))

    def __getattr__(self, name: str) -> StepRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


class Reader:
    """The ``read(path)`` function of one step: only declared inputs may be read."""

    def __init__(self, inputs: Iterable[str], workdir: Path, excludes: Iterable[str] = ()) -> None:
        self._inputs = list(inputs)
        self._excludes = tuple(excludes)
        self._workdir = workdir

    def __call__(self, path: str) -> str:
        normal = self.check(path)
        if escapes_through_symlink(self._workdir, normal):
            raise TemplateError(f"read('{path}'): the file leads outside the workdir")
        try:
            return (self._workdir / normal).read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"read('{path}'): {exc.strerror}") from exc

    def check(self, path: str) -> str:
        """The normalised name of the file if `read(path)` is allowed; TemplateError if not."""
        try:
            normal = normalize(declared(path))
        except PathRefused as exc:
            raise TemplateError(f"read(): {exc}") from exc
        if is_dir(normal) or is_glob(normal):
            raise TemplateError(f"read('{path}'): read() takes one file, not a folder or glob")
        name = unescape(normal)
        if not selects(self._inputs, self._excludes, name):
            if any(covers(pattern, name) for pattern in self._inputs):
                raise TemplateError(f"read('{path}'): excluded from this step's inputs ('!')")
            raise TemplateError(
                f"read('{path}'): not a declared input of this step; add it to 'inputs'"
            )
        return name


def forbidden_read(field: str) -> Callable[[str], str]:
    """A ``read`` that refuses, for fields rendered before a step's inputs are known."""

    def read(path: str) -> str:
        raise TemplateError(f"read() cannot be used in {field}")

    return read

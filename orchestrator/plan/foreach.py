"""`foreach`: one step per item of a list, a mapping, an expression's value or a glob's
matches, named `group@item` (`group@key` for a mapping, `group@index` for an item that is not a
plain value); per file that globs match less exclusions (`group@path`); per row of a data file
(`group@key` or `group@index`); or per combination of a matrix's axes (`group@v1,v2`).

The rows file of a step may be another step's output (`{rows: "{{ steps.architect.output }}"}`):
then its steps are planned from the file as it is, and each records the file's sha256, so that
a build plans them again once that step has written it; a file not written yet defers the
group."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from orchestrator.core.errors import PipelineError, TemplateError
from orchestrator.core.paths import (
    LiteralPath,
    PathRefused,
    escapes_through_symlink,
    excluded,
    expand_glob,
    is_glob,
    normalize,
    unescape,
)
from orchestrator.language.settings import fail_at
from orchestrator.language.source import SourceDocument
from orchestrator.language.spec import FilesForeach, MatrixForeach, RowsForeach
from orchestrator.language.templating import Renderer, StepsView, forbidden_read
from orchestrator.plan.rows import read_rows
from orchestrator.store.digest import sha256_file

Instance = tuple[str, Any, Any]
"""A step id, its `item` and its `key` (None outside a mapping)."""


class Upstream(Protocol):
    """What a `rows` foreach may know of the other steps: their outputs."""

    def steps(self) -> StepsView:
        """`steps`, for a rows path such as ``{{ steps.architect.output }}``."""
        ...

    def writes(self, path: str) -> bool:
        """Whether another step writes `path`."""
        ...


class Foreach:
    """Expands the `foreach` of each step, remembering what each glob matched."""

    def __init__(
        self,
        source: SourceDocument,
        renderer: Renderer,
        workdir: Path,
        base: Mapping[str, Any],
        upstream: Upstream | None = None,
    ) -> None:
        self.source = source
        self.renderer = renderer
        self.workdir = workdir
        self.base = base
        self.upstream = upstream
        self.globs: dict[str, list[str]] = {}
        self.rows: dict[str, str] = {}
        """The data file each `rows` foreach read, by group (read at plan time)."""
        self.digests: dict[str, str | None] = {}
        """Each data file's sha256 (None: absent) taken before it was read: a file that
        changes while it is read is then seen as changed, never as what it became."""
        self.expands: dict[str, tuple[tuple[str, str | None], ...]] = {}
        """The groups whose rows file another step writes, with its sha256 when planned."""
        self.deferred: dict[str, tuple[str, ...]] = {}
        """The groups whose rows file another step writes and has not written yet (or wrote
        in a form that cannot be planned from: see `problems`)."""
        self.warnings: list[str] = []
        """Mappings that look like the `rows` or `matrix` form but are read as plain ones."""
        self.problems: dict[str, str] = {}
        """Why a deferred group's rows file, as another step left it, cannot be planned from."""

    def instances(self, group: str, foreach: Any) -> list[Instance]:
        """The steps a step's `foreach` gives (the step itself when it has none)."""
        if foreach is None:
            return [(group, None, None)]
        if isinstance(foreach, RowsForeach):
            return self._rows(group, foreach)
        if isinstance(foreach, MatrixForeach):
            return self._matrix(group, foreach)
        if isinstance(foreach, FilesForeach):
            return [(f"{group}@{path}", path, None) for path in self._files(group, foreach)]
        items = foreach
        if isinstance(items, dict):
            self._warn_near_form(group, items)
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

    def _warn_near_form(self, group: str, mapping: Mapping[str, Any]) -> None:
        """A plain mapping holding `rows` or `matrix` beside other keys is most likely a
        mistyped form (`kye:` for `key:`): say how it is read."""
        forms = {
            "rows": (str, ("key",)),
            "files": (list, ()),
            "matrix": (dict, ("exclude", "include")),
        }
        for form, (shape, extra) in forms.items():
            if isinstance(mapping.get(form), shape):
                others = [str(k) for k in mapping if k != form and k not in extra]
                location = self.source.locate(("steps", group, "foreach"))
                self.warnings.append(
                    f"{location}: warning: step '{group}': foreach has '{form}' and"
                    f" {', '.join(repr(k) for k in others)}, so it is read as a plain mapping"
                    f" (one step per key); the '{form}' form takes only"
                    f" {' and '.join(repr(k) for k in (form, *extra))}"
                )

    def empty_warning(self, group: str, foreach: Any) -> str:
        """A foreach that gives no step is likely a mistake: where its list came from."""
        glob = isinstance(foreach, str) and is_glob(foreach)
        what = "matched no files" if glob or isinstance(foreach, FilesForeach) else "is empty"
        origin = f" ('{foreach}')" if isinstance(foreach, str) else ""
        if isinstance(foreach, RowsForeach):
            what, origin = "has no rows", f" ('{self.rows.get(group, foreach.rows)}')"
        elif isinstance(foreach, FilesForeach):
            origin = f" ({', '.join(repr(entry) for entry in foreach.files)})"
        elif isinstance(foreach, MatrixForeach):
            what = "has no combinations"
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
        normal = self._pattern(group, pattern, "foreach")
        if not is_glob(normal):
            return [LiteralPath(unescape(normal))]
        self.globs[normal] = expand_glob(self.workdir, normal)
        return [LiteralPath(path) for path in self.globs[normal]]

    def _files(self, group: str, spec: FilesForeach) -> list[Any]:
        """The files the entries match, in order, less those an `!` entry matches."""
        found: dict[str, Any] = {}
        excludes: list[str] = []
        field = "foreach.files"
        for entry in spec.files:
            if entry.startswith("!"):
                excludes.append(self._pattern(group, self._render(group, entry[1:]), field))
                continue
            items = self._evaluate(group, entry)
            if not isinstance(items, list | tuple):
                items = [items]
            for item in items:
                found.setdefault(str(item), item)
        return [item for path, item in found.items() if not excluded(excludes, path)]

    def _render(self, group: str, text: str) -> str:
        context = {**self.base, "read": forbidden_read("foreach")}
        try:
            return str(self.renderer.evaluate(text, context))
        except TemplateError as exc:
            raise self._fail(group, f"step '{group}', field 'foreach.files': {exc}") from exc

    def _pattern(self, group: str, pattern: str, field: str) -> str:
        try:
            return normalize(pattern)
        except PathRefused as exc:
            raise self._fail(group, f"step '{group}', field '{field}': {exc}") from exc

    # ------------------------------------------------------------------ rows

    def _rows(self, group: str, spec: RowsForeach) -> list[Instance]:
        """One step per row of a data file, named by its `key` field or its index."""
        path = self._rows_path(group, spec.rows)
        self.rows[group] = path
        if path not in self.digests:
            self.digests[path] = _sha256_or_none(self.workdir / path)
        if self.upstream is not None and self.upstream.writes(path):
            return self._upstream_rows(group, spec, path)
        return self._file_rows(group, spec, path)

    def _upstream_rows(self, group: str, spec: RowsForeach, path: str) -> list[Instance]:
        """The steps of a rows file another step writes: planned from it as it is, deferred
        while it is missing or cannot be planned from (what it holds is that step's doing, not
        the pipeline's: the build says so once the step has run)."""
        if self.digests[path] is None:
            self.deferred[group] = (path,)
            return []
        try:
            found = self._file_rows(group, spec, path)
        except PipelineError as exc:
            self.deferred[group] = (path,)
            self.problems[group] = exc.render()
            return []
        self.expands[group] = ((path, self.digests[path]),)
        return found

    def _file_rows(self, group: str, spec: RowsForeach, path: str) -> list[Instance]:
        try:
            rows = read_rows(self.workdir, path)
        except PipelineError as exc:
            (problem,) = exc.diagnostics
            where = problem.location or problem.file
            message = f"{where}: {problem.message}" if where else problem.message
            raise self._fail(group, f"step '{group}', field 'foreach': {message}") from exc
        found: list[Instance] = []
        seen: dict[Any, int] = {}
        for index, (line, row) in enumerate(rows):
            name = index if spec.key is None else self._row_key(group, spec.key, index, row)
            if name in seen:
                raise self._fail(
                    group,
                    f"step '{group}', field 'foreach': rows {seen[name]} and {index} of '{path}'"
                    f" have the same key '{name}'{_at_line(line)}",
                )
            seen[name] = index
            found.append((f"{group}@{name}", row, name))
        return found

    def _rows_path(self, group: str, text: str) -> str:
        """The data file a `rows` names: a template seeing vars and env, one file."""
        context = {**self.base, "read": forbidden_read("foreach")}
        if self.upstream is not None:
            context["steps"] = self.upstream.steps()
        try:
            value = self.renderer.evaluate(text, context)
            normal = normalize(str(value))
        except (TemplateError, PathRefused) as exc:
            raise self._fail(group, f"step '{group}', field 'foreach.rows': {exc}") from exc
        if is_glob(normal):
            raise self._fail(
                group, f"step '{group}', field 'foreach.rows': '{normal}' is a glob; name one file"
            )
        path = unescape(normal)
        if escapes_through_symlink(self.workdir, path):
            raise self._fail(
                group,
                f"step '{group}', field 'foreach.rows': '{path}' leads outside the workdir"
                " through a symlink",
            )
        return path

    def _row_key(self, group: str, key: str, index: int, row: Mapping[str, Any]) -> Any:
        """The value of a row's `key` field: a plain value that names its step."""
        value = row.get(key)
        if not _is_scalar(value):
            what = "has no field" if key not in row else "has no plain value in field"
            raise self._fail(
                group,
                f"step '{group}', field 'foreach': row {index} of '{self.rows[group]}'"
                f" {what} '{key}' (the rows' key)",
            )
        return value

    # ------------------------------------------------------------------ matrix

    def _matrix(self, group: str, spec: MatrixForeach) -> list[Instance]:
        """One step per combination of the axes' values, minus `exclude`, plus `include`."""
        axes = {name: self._axis(group, name, values) for name, values in spec.matrix.items()}
        found = [
            dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())
        ]
        kept = [c for c in found if not any(_matches(c, row) for row in spec.exclude)]
        instances = [(f"{group}@{_combination_id(axes, c)}", c, None) for c in kept]
        for index, row in enumerate(spec.include):
            combination = {name: row[name] for name in axes}
            step_id = f"{group}@{_combination_id(axes, combination, index)}"
            instances.append((step_id, combination, None))
        return instances

    def _axis(self, group: str, name: str, values: list[Any] | str) -> list[Any]:
        """An axis's values: a list as written, or what its expression or glob gives."""
        found = self._evaluate(group, values) if isinstance(values, str) else values
        if not isinstance(found, list | tuple):
            raise self._fail(
                group,
                f"step '{group}', field 'foreach.matrix.{name}': an axis is a list of values,"
                f" not {type(found).__name__}",
            )
        return list(found)

    def _fail(self, group: str, message: str) -> PipelineError:
        return fail_at(message, self.source, ("steps", group, "foreach"))


def _sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path) if path.is_file() else None
    except OSError:
        return None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _at_line(line: int | None) -> str:
    return f" (line {line})" if line is not None else ""


def _matches(combination: Mapping[str, Any], partial: Mapping[str, Any]) -> bool:
    """Whether a combination has every value a partial one gives."""
    return all(combination[name] == value for name, value in partial.items())


def _combination_id(
    axes: Mapping[str, list[Any]], combination: Mapping[str, Any], include: int = 0
) -> str:
    """The values joined with `,` in axis order. A value that is not plain is named by its index
    in its axis; one that only `include[n]` gives, by the axis's length plus n."""
    return ",".join(_value_id(axes[name], value, include) for name, value in combination.items())


def _value_id(values: list[Any], value: Any, include: int) -> str:
    if _is_scalar(value):
        return str(value)
    return str(values.index(value) if value in values else len(values) + include)

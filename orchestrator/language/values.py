"""Values files (YAML, JSON, TOML) read into vars, deep merging, and nested `--set` values.

A values file is data: its top level is a mapping of var names, its strings are not rendered.
Entries of a `vars:` list merge in order: a mapping merges key by key, at every depth, and any
other value replaces what was there.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.core.errors import Location, PipelineError
from orchestrator.core.suggest import suggest
from orchestrator.language.source import SourceDocument, parse, position_in, to_plain
from orchestrator.language.spec import RESERVED_NAMES

FORMATS = {".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".toml": "TOML"}
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def read_values(path: Path, name: str, at: Location) -> dict[str, Any]:
    """The vars a values file holds; `at` is where the pipeline names it."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise PipelineError.at(
            f"values file '{name}': unknown format; name it .yaml, .yml, .json or .toml", at
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise PipelineError.at(f"values file '{name}' not found", at) from exc
    except UnicodeDecodeError as exc:
        raise PipelineError.at(f"values file '{name}' is not UTF-8 text", at) from exc
    except OSError as exc:
        raise PipelineError.at(f"cannot read values file '{name}': {exc}", at) from exc
    data, locate = _PARSERS[kind](path, text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PipelineError.at(
            f"values file '{name}' must hold a mapping of var names, not a {type(data).__name__}",
            Location(path, 1, 1),
        )
    for key in data:
        if not isinstance(key, str) or not _VAR_NAME.match(key):
            raise PipelineError.at(
                f"invalid var name {key!r} in '{name}':"
                " use letters, digits and '_', not starting with a digit",
                locate(str(key)),
            )
        if key in RESERVED_NAMES:
            raise PipelineError.at(f"var '{key}' in '{name}' uses a reserved name", locate(key))
    return {key: _plain(value) for key, value in data.items()}


Locator = Callable[[str], Location]


def _yaml(path: Path, text: str) -> tuple[Any, Locator]:
    document = parse(path, text)
    return to_plain(document), lambda key: document.locate((key,), key=True)


def _json(path: Path, text: str) -> tuple[Any, Locator]:
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        at = Location(path, exc.lineno, exc.colno)
        raise PipelineError.at(f"invalid JSON: {exc.msg}", at) from exc
    except RecursionError as exc:
        raise PipelineError.at("invalid JSON: it nests too deeply", None, path) from exc
    document = SourceDocument(path, text, data)  # JSON is YAML: its nodes can be located
    return data, lambda key: document.locate((key,), key=True)


def _toml(path: Path, text: str) -> tuple[Any, Locator]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        at = Location(path, int(found[1]), int(found[2])) if found else None
        problem = _TOML_POSITION.sub("", message).strip()
        raise PipelineError.at(f"invalid TOML: {problem}", at, path) from exc

    def locate(key: str) -> Location:
        pattern = re.compile(rf"""^[ \t]*\[?[ \t]*["']?{re.escape(key)}["']?[ \t]*[=\].]""", re.M)
        found = pattern.search(text)
        return position_in(path, text, found.start()) if found else Location(path, 1, 1)

    return data, locate


_PARSERS = {"YAML": _yaml, "JSON": _json, "TOML": _toml}


def _plain(value: Any) -> Any:
    """TOML times become their ISO text; dates and the rest stay as they are."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, datetime.time):
        return value.isoformat()
    return value


def merge(base: Any, extra: Any) -> Any:
    """`extra` over `base`: mappings merge key by key at every depth; anything else replaces."""
    if isinstance(base, Mapping) and isinstance(extra, Mapping):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = merge(merged[key], value) if key in merged else value
        return merged
    return extra


def has_path(variables: Mapping[str, Any], dotted: str) -> bool:
    """Whether every key of ``a.b.c`` exists, each inside a mapping."""
    value: Any = variables
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def set_path(variables: dict[str, Any], dotted: str, value: Any, file: Path) -> None:
    """Replace the value at ``a.b.c`` (copying the mappings on the way); a key that does not
    exist is an error, with the close match of a misspelt one."""
    root, *parts = dotted.split(".")
    if root not in variables:
        raise PipelineError.at(
            f"--set {dotted}: no var '{root}'{suggest(root, variables)}", None, file
        )
    variables[root] = _replaced(variables[root], parts, value, dotted, root, file)


def _replaced(node: Any, parts: list[str], value: Any, dotted: str, at: str, file: Path) -> Any:
    if not parts:
        return value
    if not isinstance(node, Mapping):
        raise PipelineError.at(
            f"--set {dotted}: '{at}' is a {type(node).__name__}, not a mapping", None, file
        )
    key, rest = parts[0], parts[1:]
    if key not in node:
        keys = [str(k) for k in node]
        raise PipelineError.at(
            f"--set {dotted}: '{at}' has no key '{key}'{suggest(key, keys)}", None, file
        )
    return {**node, key: _replaced(node[key], rest, value, dotted, f"{at}.{key}", file)}

"""The rows of a data file for `foreach: {rows: ...}`: a JSON or YAML list of mappings, JSON
Lines, or CSV with a header, chosen by the file's extension. Every problem is a PipelineError
at the data file's line when it is known."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.core.errors import Location, PipelineError

Row = tuple[int | None, Any]
"""A row and the line of the data file it starts on (None when not known)."""

SUFFIXES = (".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".csv")


def read_rows(workdir: Path, path: str) -> list[Row]:
    """The rows of the data file `path` (relative to the workdir), each a mapping."""
    file = workdir / path
    reader = _READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise PipelineError.at(
            f"cannot tell the format of '{path}': its name must end in one of"
            f" {', '.join(SUFFIXES)}",
            None,
        )
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PipelineError.at(f"no such rows file '{path}'", None) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError.at(f"cannot read rows file '{path}': {exc}", None) from exc
    return [_mapping(Path(path), index, row) for index, row in enumerate(reader(Path(path), text))]


def _mapping(file: Path, index: int, row: Row) -> Row:
    line, value = row
    if not isinstance(value, dict):
        kind = _KINDS.get(type(value), type(value).__name__)
        where = Location(file, line, 1) if line is not None else None
        raise PipelineError.at(f"row {index} is {kind}, not a mapping", where, file)
    return line, {str(key): item for key, item in value.items()}


def _json(file: Path, text: str) -> list[Row]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = Location(file, exc.lineno, exc.colno)
        raise PipelineError.at(f"invalid JSON: {exc.msg}", where) from exc
    return _listed(file, data, "JSON")


def _jsonl(file: Path, text: str) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            where = Location(file, number, exc.colno)
            raise PipelineError.at(f"invalid JSON: {exc.msg}", where) from exc
    return rows


def _yaml(file: Path, text: str) -> list[Row]:
    from orchestrator.language.source import parse

    data = parse(file, text).data
    return [] if data is None else _listed(file, data, "YAML")


def _csv(file: Path, text: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows: list[Row] = []
    try:
        for row in reader:
            width = len(reader.fieldnames or [])
            if None in row or None in row.values():
                given = width + len(row.get(None, [])) if None in row else "fewer"
                where = Location(file, reader.line_num, 1)
                raise PipelineError.at(f"this row has {given} fields, the header {width}", where)
            rows.append((reader.line_num, dict(row)))
    except csv.Error as exc:
        raise PipelineError.at(f"invalid CSV: {exc}", Location(file, reader.line_num, 1)) from exc
    return rows


def _listed(file: Path, data: Any, what: str) -> list[Row]:
    if not isinstance(data, list):
        kind = _KINDS.get(type(data), type(data).__name__)
        raise PipelineError.at(
            f"a {what} rows file holds a list of rows (mappings), not {kind}",
            Location(file, 1, 1),
        )
    return [(None, row) for row in data]


_KINDS = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}

_READERS: dict[str, Callable[[Path, str], list[Row]]] = {
    ".json": _json,
    ".jsonl": _jsonl,
    ".ndjson": _jsonl,
    ".yaml": _yaml,
    ".yml": _yaml,
    ".csv": _csv,
}

"""Parsing a pipeline file with ruamel.yaml, and finding where any key or value stands.

The data comes from ruamel's safe loader; the round-trip parse that knows every node's line
and column is about three times slower, so it runs only when an error needs a location.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Location, PipelineError

PathKey = str | int


@dataclass(frozen=True)
class SourceDocument:
    """The parsed YAML of a pipeline file; the positions of its nodes on demand."""

    file: Path
    text: str
    data: Any

    @functools.cached_property
    def root(self) -> Any:
        """The round-trip tree, whose nodes know their line and column."""
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        try:
            return YAML(typ="rt").load(self.text)
        except (YAMLError, RecursionError):
            return None

    def locate(self, path: Sequence[PathKey], *, key: bool = False) -> Location:
        """Where the node at `path` stands; with `key`, where its mapping key stands.

        Walks as deep as the path exists and returns the deepest position found, so a
        path into a missing field points at the mapping that lacks it.
        """
        node = self.root
        line, col = _start_of(node)
        for depth, part in enumerate(path):
            position = _child_position(node, part, key=key and depth == len(path) - 1)
            if position is None:
                break
            line, col = position
            node = node[part]
        return Location(self.file, line + 1, col + 1)


def _start_of(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return (0, 0)
    return (lc.line, lc.col)


def _child_position(node: Any, part: PathKey, *, key: bool) -> tuple[int, int] | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if isinstance(node, dict) and part in node:
            line, col = lc.key(part) if key else lc.value(part)
            return (line, col)
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line, col = lc.item(part)
            return (line, col)
    except (KeyError, TypeError, AttributeError):
        return None
    return None


def parse(file: Path, text: str) -> SourceDocument:
    """Parse YAML text into a document; YAML errors become PipelineError."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=True)
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(file, mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise PipelineError.at(f"invalid YAML: {problem}", location, file) from exc
    except YAMLError as exc:
        raise PipelineError.at(f"invalid YAML: {exc}", None, file) from exc
    except RecursionError as exc:
        raise PipelineError.at("invalid YAML: the document nests too deeply", None, file) from exc
    return SourceDocument(file, text, data)


MAX_NODES = 200_000
MAX_DEPTH = 64


def to_plain(document: SourceDocument) -> Any:
    """The document as plain dicts, lists and scalars, refusing alias bombs and deep nesting."""
    budget = [MAX_NODES]

    def convert(node: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise PipelineError.at(
                f"the document expands to more than {MAX_NODES} values (through YAML aliases?)",
                None,
                document.file,
            )
        if depth > MAX_DEPTH:
            raise PipelineError.at(
                f"the document nests deeper than {MAX_DEPTH} levels", None, document.file
            )
        if isinstance(node, dict):
            return {
                (str(k) if isinstance(k, str) else k): convert(v, depth + 1)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [convert(v, depth + 1) for v in node]
        for plain in (str, bool, int, float):
            if isinstance(node, plain):
                return plain(node)
        return node

    return convert(document.data, 0)

"""Parsing a pipeline file with ruamel.yaml, and finding where any key or value stands.

The data comes from ruamel's safe loader, with libyaml's C parser when `ruamel.yaml.clib` is
installed (about ten times faster) and the pure-Python one otherwise. A document the C parser
refuses is parsed again by the pure one, whose errors the diagnostics and hints are written
for. The round-trip parse that knows every node's line and column is slower still, so it runs
only when an error needs a location.

Both loaders read YAML 1.2, whatever a `%YAML` directive says: libyaml's parser does not pass
the directive on, so honouring it in the pure parser alone would give the same text two
meanings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.core.errors import Diagnostic, Location, PipelineError
from orchestrator.language.yamlhints import YamlProblem, at_context, hint

PathKey = str | int
Origin = tuple["SourceDocument", tuple[PathKey, ...]]
"""A merged entry's document and its path there."""


@dataclass(frozen=True)
class SourceDocument:
    """The parsed YAML of a pipeline file; the positions of its nodes on demand.

    For a pipeline with `include:`, `data` holds the merged entries and `origins` where each
    entry from an included file was declared, keyed by ``(section, name)``: the document and
    the entry's path in it, so that `locate` points into that file; `includes` lists the
    included files.
    """

    file: Path
    text: str
    data: Any
    origins: Mapping[tuple[str, Any], Origin] = field(default_factory=dict)
    includes: tuple[Path, ...] = ()

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
        origin = self.origins.get((str(path[0]), path[1])) if path[1:] else None
        if origin is not None:
            document, entry = origin
            return document.locate((*entry, *path[2:]), key=key)
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
    data = _fast_load(text)
    if data is _REFUSED:
        data = _pure_load(file, text)
    return SourceDocument(file, text, data)


_REFUSED = object()


def _fast_load(text: str) -> Any:
    """The data, parsed by libyaml when ruamel.yaml.clib is installed; `_REFUSED` when it is
    not, or when the text is not valid YAML (the pure parser then says why)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        yaml = YAML(typ="safe", pure=False)
    except Exception:  # no C extension: ruamel falls back by itself on some versions only
        return _REFUSED
    if "CParser" not in getattr(yaml.Parser, "__name__", ""):
        return _REFUSED
    yaml.Resolver = _yaml_12_resolver()
    try:
        return yaml.load(text)
    except (YAMLError, RecursionError, ValueError):
        return _REFUSED


@functools.cache
def _yaml_12_resolver() -> type:
    """ruamel's resolver with the YAML version fixed at 1.2 (ruamel looks the version up again
    for every scalar otherwise, a third of the time libyaml leaves to Python)."""
    from ruamel.yaml.resolver import VersionedResolver

    class Yaml12Resolver(VersionedResolver):
        @property
        def processing_version(self) -> tuple[int, int]:
            return (1, 2)

        @functools.cached_property
        def versioned_resolver(self) -> Any:
            return super().versioned_resolver

    return Yaml12Resolver


def _pure_load(file: Path, text: str) -> Any:
    """The data, parsed by ruamel's pure-Python parser; its YAML errors become PipelineError."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.Resolver = _yaml_12_resolver()
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        found = _yaml_problem(exc)
        mark = exc.context_mark if at_context(found) else exc.problem_mark
        mark = mark or exc.context_mark
        location = Location(file, mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        advice = hint(text, found)
        raise PipelineError(
            [Diagnostic(f"invalid YAML: {problem}", location, file, advice)]
        ) from exc
    except YAMLError as exc:
        position = getattr(exc, "position", None)  # a ReaderError: a character YAML refuses
        location = position_in(file, text, position) if isinstance(position, int) else None
        problem = str(exc).split("\n")[0] if location else str(exc)
        raise PipelineError.at(f"invalid YAML: {problem}", location, file) from exc
    except RecursionError as exc:
        raise PipelineError.at("invalid YAML: the document nests too deeply", None, file) from exc


def _yaml_problem(exc: Any) -> YamlProblem:
    """What a ruamel `MarkedYAMLError` says, as plain values."""
    problem, context = exc.problem_mark, exc.context_mark
    return YamlProblem(
        exc.problem or "",
        problem.line if problem else None,
        problem.column if problem else None,
        exc.context or "",
        context.line if context else None,
        context.column if context else None,
    )


def position_in(file: Path, text: str, offset: int) -> Location:
    """The line and column of the character at `offset` of `text`."""
    line_start = text.rfind("\n", 0, offset) + 1
    return Location(file, text.count("\n", 0, offset) + 1, offset - line_start + 1)


MAX_ALIASED = 200_000
"""Values that YAML aliases may repeat in one document."""
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate of `text`, escaped (`\\ud800`), or None. A YAML or Jinja
    escape can give one; it is not a character and cannot be written as UTF-8."""
    found = _SURROGATE.search(text)
    return None if found is None else f"\\u{ord(found[0]):04x}"


LOCATABLE_DEPTH = 500
"""Deeper than this, the round-trip parse that locates nodes takes seconds: a document nested
so deep is located at its top-level key, found in the text."""


def _too_deep(document: SourceDocument, path: tuple[PathKey, ...]) -> Location:
    """Where a node nested too deep stands: the node itself, or for a document too deep to be
    parsed again for positions in good time, the top-level key that holds it."""
    if not _deeper_than(document.data, LOCATABLE_DEPTH):
        return document.locate(path)
    found = re.search(rf"^{re.escape(str(path[0]))}\s*:", document.text, re.MULTILINE)
    return position_in(document.file, document.text, found.start() if found else 0)


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether `data` nests more than `limit` levels (looked at without recursion)."""
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)
    return False


def to_plain(document: SourceDocument) -> Any:
    """The document as plain dicts, lists and scalars, refusing alias bombs and deep nesting.

    A mapping or list met again is one an alias repeats: the values converted inside such
    repeats count against `MAX_ALIASED`, so that a document of any size but without aliases
    loads, and one whose aliases multiply stops early."""
    budget = [MAX_ALIASED]
    seen: set[int] = set()  # the containers converted once; the document keeps them alive

    def convert(node: Any, path: tuple[PathKey, ...], repeated: bool = False) -> Any:
        if isinstance(node, dict | list):
            repeated = repeated or id(node) in seen
            seen.add(id(node))
        if repeated:
            budget[0] -= 1
            if budget[0] < 0:
                raise PipelineError.at(
                    f"YAML aliases expand to more than {MAX_ALIASED} values",
                    None,
                    document.file,
                )
        if len(path) > MAX_DEPTH:
            raise PipelineError.at(
                f"the document nests deeper than {MAX_DEPTH} levels", _too_deep(document, path)
            )
        if isinstance(node, dict):
            return {_key(k, (*path, k)): convert(v, (*path, k), repeated) for k, v in node.items()}
        if isinstance(node, list):
            return [convert(v, (*path, i), repeated) for i, v in enumerate(node)]
        if isinstance(node, str):
            _check_text(node, path)
        for plain in (str, bool, int, float):
            if isinstance(node, plain):
                return plain(node)
        return node

    def _key(key: Any, path: tuple[PathKey, ...]) -> Any:
        if isinstance(key, str):
            _check_text(key, path, key=True)
            return str(key)
        return key

    def _check_text(text: str, path: tuple[PathKey, ...], key: bool = False) -> None:
        surrogate = lone_surrogate(text)
        if surrogate:
            message = f"'{surrogate}' is a lone surrogate, not a character"
            raise PipelineError.at(message, document.locate(path, key=key))

    return convert(document.data, ())

"""Turning a model's reply into output files: `text`, `code`, `files` and `json`.

Fenced blocks open with three or more backticks (or tildes) and an optional info string, and
close with a bare fence at least as long. Inside a block, a fence line that carries an info
string opens a nested block (a README with examples), so its bare closing fence does not end
the outer one. A reply that ends inside a block was cut off, and is refused.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from orchestrator.core.errors import StepFailed
from orchestrator.core.paths import PathRefused, is_within, normalize

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_PATH_KEYS = ("path", "file", "filename", "title")


class Block(NamedTuple):
    """One fenced block: its info string and its text (ending with a newline unless empty)."""

    info: str
    body: str


def failure(message: str) -> StepFailed:
    """A reply that cannot give the step's outputs."""
    return StepFailed("extract", message)


def fenced_blocks(text: str) -> list[Block]:
    """Every top-level fenced block in `text`, in order."""
    lines = text.splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, info = opening.group(1), opening.group(2).strip()
        body, index = _block_body(lines, index, fence)
        blocks.append(Block(info, "".join(line + "\n" for line in body)))
    return blocks


def _block_body(lines: list[str], index: int, fence: str) -> tuple[list[str], int]:
    """The lines of a block that starts at `index`, and the index after its closing fence."""
    body: list[str] = []
    depth = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        match = _FENCE.match(line)
        if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
            if match.group(2).strip():
                depth += 1
            elif depth:
                depth -= 1
            else:
                return body, index
        body.append(line)
    raise failure("the reply ends inside a fenced block: it was cut off")


def first_code_block(text: str) -> str:
    """The text of the reply's first fenced block (`extract: code`)."""
    blocks = fenced_blocks(text)
    if not blocks:
        raise failure("the reply has no fenced code block")
    return blocks[0].body


def path_of(info: str) -> str | None:
    """The file path a fence line names: ```` ```python app/main.py ```` or ```` ```main.py ````."""
    tokens = info.split()
    for token in tokens:
        name, sep, value = token.partition("=")
        if sep and name.lower() in _PATH_KEYS:
            return value.strip("\"'") or None
    if len(tokens) >= 2:
        return tokens[-1]
    if len(tokens) == 1 and ("." in tokens[0] or "/" in tokens[0]):
        return tokens[0]
    return None


def files(text: str, folders: Sequence[str], others: Sequence[str] = ()) -> dict[str, str]:
    """Workdir-relative path → text for each block that names a file (`extract: files`).

    A path inside one of `folders` is taken as it is; any other is relative to the first folder.
    Every path must end inside a folder and outside `others` (what other steps write there),
    or nothing is written. When a path comes twice, the later block wins.
    """
    found: dict[str, str] = {}
    for block in fenced_blocks(text):
        named = path_of(block.info)
        if named is not None:
            found[_place(named, folders, others)] = block.body
    if not found:
        raise failure("the reply names no files: put each path on its block's fence line")
    return found


def _place(named: str, folders: Sequence[str], others: Sequence[str]) -> str:
    """Where a path a reply names lands, or a failure saying why it may not."""
    if named.startswith(("/", "\\", "~")) or (len(named) > 1 and named[1] == ":"):
        raise failure(f"the reply names an absolute path '{named}'")
    path = _normal(named)
    if path is None or not any(is_within(path, folder) for folder in folders):
        path = _normal(posixpath.join(folders[0], named))
    if path is None or path.endswith("/") or not any(is_within(path, f) for f in folders):
        where = ", ".join(f"'{folder}'" for folder in folders)
        raise failure(f"the reply names '{named}', which is outside the output folder {where}")
    if any(is_within(path, other) for other in others):
        raise failure(f"the reply names '{path}', which another step writes")
    return path


def _normal(path: str) -> str | None:
    try:
        return normalize(path)
    except PathRefused:
        return None


def json_document(text: str, schema: dict[str, Any] | None) -> str:
    """The reply's JSON value, checked against `schema`, pretty-printed (`extract: json`)."""
    value = _json_value(text)
    if schema is not None:
        from jsonschema import exceptions, validators

        validator = validators.validator_for(schema)(schema)
        error = exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = error.json_path if error.path else "the top level"
            raise failure(f"the reply does not match the schema at {where}: {error.message}")
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as whole:
        blocks = fenced_blocks(text) if "```" in text or "~~~" in text else []
        if not blocks:
            raise failure(f"the reply is not JSON: {whole}") from whole
        try:
            return json.loads(blocks[0].body)
        except ValueError as exc:
            raise failure(f"the reply's first fenced block is not JSON: {exc}") from exc

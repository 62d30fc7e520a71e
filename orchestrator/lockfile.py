"""The lock file `<pipeline>.lock`: per step, the key and hashes of its last successful run.

It is YAML meant to be committed, written atomically after each successful step, in a fixed
order and quoting so that merges stay small::

    # Written by orch build: commit it with the pipeline; do not edit it by hand.
    version: 2
    steps:
      architect:
        key: "<sha256>"
        definition: "<sha256>"
        inputs:
          specs/notes_app.md: "<sha256>"
        outputs:
          build/notes_api/design.md: "<sha256>"
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import OrchError

LOCK_VERSION = 2
"""The lock format, which changes with the key format: entries of version 1 locks are read,
and every step they record rebuilds, saying why."""
READABLE_VERSIONS = frozenset({1, LOCK_VERSION})
HEADER = "# Written by orch build: commit it with the pipeline; do not edit it by hand.\n"
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./@+-]*$")
_YAML_WORDS = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n"})
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class LockError(OrchError):
    """The lock file cannot be used: corrupt, or written by an unknown version."""

    exit_code = 2


class LockEntry(NamedTuple):
    """What the last successful run of one step recorded."""

    key: str
    definition: str
    inputs: Mapping[str, str] = MappingProxyType({})
    outputs: Mapping[str, str] = MappingProxyType({})
    version: int = LOCK_VERSION
    """The version of the lock it was read from: an older one's keys are of an older format."""


def lock_path(pipeline_file: Path) -> Path:
    """`pipelines/notes_app.yaml` → `pipelines/notes_app.lock`."""
    return pipeline_file.with_suffix(".lock")


def read_lock(path: Path) -> dict[str, LockEntry]:
    """The entries of a lock file; none if it does not exist; LockError if it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"{path}: cannot read the lock file: {exc}") from exc
    return parse_lock(path, text)


def parse_lock(path: Path, text: str) -> dict[str, LockEntry]:
    """Parse lock text; LockError names the file and what is wrong.

    Text exactly as `render_lock` writes it is read line by line; anything else (a hand edit,
    a merge) goes through the YAML parser.
    """
    fast = _parse_rendered(text)
    if fast is not None:
        return fast
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(text)
    except (YAMLError, RecursionError) as exc:
        raise _corrupt(path, "it is not valid YAML") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or "version" not in data:
        raise _corrupt(path, "it has no 'version'")
    version = data["version"]
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise LockError(
            f"{path}: lock file version {version!r} is not supported (this orch reads"
            f" versions 1 and {LOCK_VERSION}); upgrade orch, or rebuild with --force"
        )
    steps = data.get("steps") or {}
    if not isinstance(steps, dict):
        raise _corrupt(path, "'steps' is not a mapping")
    entries = {str(name): _entry(path, str(name), raw) for name, raw in steps.items()}
    return {name: entry._replace(version=version) for name, entry in entries.items()}


_STEP_LINE = re.compile(r"^  ([^ ].*):$")
_DIGEST_LINE = re.compile(r'^    (key|definition): "([0-9a-f]{64})"$')
_SECTION_LINE = re.compile(r"^    (inputs|outputs):( \{\})?$")
_HASH_LINE = re.compile(r'^      ([^ ].*): "([0-9a-f]{64})"$')


def _parse_rendered(text: str) -> dict[str, LockEntry] | None:
    """Entries of text in `render_lock`'s exact layout, or None if it is laid out otherwise."""
    try:
        return _parse_lines(text)
    except (TypeError, ValueError):
        return None


def _parse_lines(text: str) -> dict[str, LockEntry] | None:
    lines = text.split("\n")
    if lines[:3] != [HEADER.rstrip("\n"), f"version: {LOCK_VERSION}", "steps:"] or lines[-1]:
        return None  # an older version, too, goes through the YAML parser
    entries: dict[str, LockEntry] = {}
    name: str | None = None
    fields: dict[str, Any] = {}
    section: dict[str, str] | None = None
    for line in lines[3:-1]:
        if line.startswith("      "):
            match = _HASH_LINE.match(line)
            if match is None or section is None:
                return None
            section[_key(match[1])] = match[2]
        elif line.startswith("    "):
            if match := _DIGEST_LINE.match(line):
                fields[match[1]] = match[2]
                section = None
            elif match := _SECTION_LINE.match(line):
                section = fields[match[1]] = {}
            else:
                return None
        elif match := _STEP_LINE.match(line):
            if name is not None:
                entries[name] = LockEntry(**fields)
            name, fields, section = _key(match[1]), {}, None
        else:
            return None
    if name is not None:
        entries[name] = LockEntry(**fields)
    return entries


def _key(text: str) -> str:
    """A key as `_scalar` wrote it."""
    return json.loads(text) if text.startswith('"') else text


def _entry(path: Path, name: str, raw: Any) -> LockEntry:
    try:
        entry = LockEntry(
            key=_digest(raw["key"]),
            definition=_digest(raw["definition"]),
            inputs=_hashes(raw.get("inputs")),
            outputs=_hashes(raw.get("outputs")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(path, f"the entry of step '{name}' is malformed") from exc
    return entry


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not _DIGEST.match(value):
        raise ValueError(f"not a sha256: {value!r}")
    return value


def _hashes(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TypeError("expected a mapping of path to sha256")
    return {str(path): _digest(digest) for path, digest in raw.items()}


def _corrupt(path: Path, why: str) -> LockError:
    return LockError(
        f"{path}: corrupt lock file ({why}); fix or delete it, or rebuild with --force"
    )


def render_lock(entries: Mapping[str, LockEntry]) -> str:
    """The lock file text: steps, and paths within them, sorted; digests quoted."""
    return join_blocks({name: render_entry(name, entry) for name, entry in entries.items()})


def render_entry(name: str, entry: LockEntry) -> str:
    """The block of one step in the lock file."""
    lines = [
        f"  {_scalar(name)}:",
        f'    key: "{entry.key}"',
        f'    definition: "{entry.definition}"',
    ]
    for section, hashes in (("inputs", entry.inputs), ("outputs", entry.outputs)):
        lines.append(f"    {section}:" + ("" if hashes else " {}"))
        lines.extend(f'      {_scalar(path)}: "{hashes[path]}"' for path in sorted(hashes))
    return "\n".join(lines) + "\n"


def join_blocks(blocks: Mapping[str, str]) -> str:
    """The lock file text from the rendered blocks of its steps."""
    head = f"{HEADER}version: {LOCK_VERSION}\nsteps:" + ("\n" if blocks else " {}\n")
    return head + "".join(blocks[name] for name in sorted(blocks))


def _scalar(text: str) -> str:
    """A YAML key: plain when unambiguous, else a JSON (= YAML double-quoted) string."""
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def write_lock(path: Path, entries: Mapping[str, LockEntry]) -> None:
    """Write the lock file atomically."""
    write_text(path, render_lock(entries))


def write_text(path: Path, text: str) -> None:
    """Write rendered lock text atomically and durably."""
    from .filestore import atomic_write

    atomic_write(path, text.encode("utf-8"))

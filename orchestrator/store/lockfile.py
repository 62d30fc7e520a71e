"""The lock file `<pipeline>.lock`: per step, the key and hashes of its last successful run.

It is YAML meant to be committed, written atomically after each successful step, in a fixed
order and quoting so that merges stay small::

    # Written by orch build: commit it with the pipeline; do not edit it by hand.
    version: 2
    checks: crc32
    steps:
      architect:
        key: "<sha256>"
        definition: "<sha256>"
        inputs:
          specs/notes_app.md: "<sha256>"
        outputs:
          build/notes_api/design.md: "<sha256>"
        check: "<crc32 of the entry's lines above>"
    # end

Nothing read back is half-used: an entry lacking a field, or failing its check, and a file
not ending with `# end` (cut short) make the whole file corrupt. Locks written before checks
(no `checks:` line) are still read, every entry complete.

During a build, the entries of finished steps go to the lock journal beside it (`journal`),
which `read_lock` reads too: a build killed before its last lock write loses nothing it
finished.
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from orchestrator.core.errors import OrchError
from orchestrator.store.journal import journal_path, read_journal

LOCK_VERSION = 2
"""The lock format, which changes with the key format: entries of version 1 locks are read,
and every step they record rebuilds, saying why."""
READABLE_VERSIONS = frozenset({1, LOCK_VERSION})
HEADER = "# Written by orch build: commit it with the pipeline; do not edit it by hand.\n"
CHECKS = "crc32"
"""Announces that every entry ends with its `check` and the file with `END`."""
END = "# end\n"
_PLAIN = re.compile(r"\A[A-Za-z_][A-Za-z0-9_./@+-]*\Z")
_YAML_WORDS = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n"})
_DIGEST = re.compile(r"\A[0-9a-f]{64}\Z")
_TOP_KEYS = frozenset({"version", "checks", "steps"})
_ENTRY_KEYS = frozenset({"key", "definition", "inputs", "outputs", "check"})


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
    """The entries of a lock file and of the journal a killed build left beside it (which
    win); none if neither exists; LockError if the lock file is unusable."""
    return {**_read_lock_file(path), **read_journaled(journal_path(path))}


def read_journaled(path: Path) -> dict[str, LockEntry]:
    """The entries of a lock journal, in order, up to the first that is cut short or fails
    its check (a torn last append); none if there is no journal."""
    text = read_journal(path)
    if not text:
        return {}
    lines = text.split("\n")[:-1]
    entries: dict[str, LockEntry] = {}
    at = 0
    with contextlib.suppress(TypeError, ValueError, IndexError):
        while at < len(lines):
            name, entry, at = _read_entry(lines, at, checked=True)
            entries[name] = entry
    return entries


def _read_lock_file(path: Path) -> dict[str, LockEntry]:
    try:
        text = path.read_bytes().decode("utf-8")  # no newline translation: a stray \r counts
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LockError(f"{path}: cannot read the lock file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise _corrupt(path, f"it is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    return parse_lock(path, text)


def parse_lock(path: Path, text: str) -> dict[str, LockEntry]:
    """Parse lock text; LockError names the file and what is wrong.

    Text exactly as `render_lock` writes it is read line by line; anything else (a hand edit,
    a merge, damage) goes through the YAML parser, which gives the verdict. Every entry must be
    complete, and pass its check when the file has checks; an empty file has no entries.
    """
    fast = _parse_rendered(text)
    if fast is not None:
        return fast
    if not text.strip():
        return {}
    data = _load_yaml(path, text)
    version = data["version"]
    if data.get("checks", CHECKS) != CHECKS:
        raise _corrupt(path, f"unknown checks {data['checks']!r}")
    checked = "checks" in data
    if checked and not text.endswith("\n" + END):
        raise _corrupt(path, f"it does not end with the line {END.strip()!r}: it was cut short")
    steps = data["steps"] or {}
    if not isinstance(steps, dict):
        raise _corrupt(path, "'steps' is not a mapping")
    entries = {str(name): _entry(path, str(name), raw, checked) for name, raw in steps.items()}
    return {name: entry._replace(version=version) for name, entry in entries.items()}


def _load_yaml(path: Path, text: str) -> dict[str, Any]:
    """The top-level mapping of a lock, its version readable and its keys known."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(text)
    except (YAMLError, RecursionError, ValueError) as exc:
        raise _corrupt(path, "it is not valid YAML") from exc
    if not isinstance(data, dict) or "version" not in data:
        raise _corrupt(path, "it has no 'version'")
    version = data["version"]
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise LockError(
            f"{path}: lock file version {version!r} is not supported (this orch reads"
            f" versions 1 and {LOCK_VERSION}); upgrade orch, or rebuild with --force"
        )
    if not text.endswith("\n"):
        raise _corrupt(path, "its last line has no newline: it was cut short")
    unknown = sorted(str(name) for name in data.keys() - _TOP_KEYS)
    if unknown or "steps" not in data:
        raise _corrupt(path, f"unknown key '{unknown[0]}'" if unknown else "it has no 'steps'")
    return data


_STEP_LINE = re.compile(r"^  ([^ ].*):$")
_KEY_LINE = re.compile(r'^    key: "([0-9a-f]{64})"$')
_DEFINITION_LINE = re.compile(r'^    definition: "([0-9a-f]{64})"$')
_HASH_LINE = re.compile(r'^      ([^ ].*): "([0-9a-f]{64})"$')
_CHECK_LINE = re.compile(r'^    check: "([0-9a-f]{8})"$')
_HEAD = HEADER.rstrip("\n"), f"version: {LOCK_VERSION}"


def _parse_rendered(text: str) -> dict[str, LockEntry] | None:
    """Entries of text in `render_lock`'s exact layout (or that of orch before checks), or
    None if it is laid out otherwise or fails a check."""
    try:
        return _parse_lines(text)
    except (TypeError, ValueError, IndexError):
        return None


def _parse_lines(text: str) -> dict[str, LockEntry] | None:
    lines = text.split("\n")
    if lines[-1] or tuple(lines[:2]) != _HEAD:
        return None  # an older version, too, goes through the YAML parser
    checked = lines[2] == f"checks: {CHECKS}"
    if checked and lines[-2] != END.rstrip("\n"):
        return None
    body = lines[4:-2] if checked else lines[3:-1]
    steps = lines[3 if checked else 2]
    if steps == "steps: {}" and not body:
        return {}
    if steps != "steps:":
        return None
    entries: dict[str, LockEntry] = {}
    at = 0
    while at < len(body):
        name, entry, at = _read_entry(body, at, checked)
        if name in entries:
            return None
        entries[name] = entry
    return entries


def _read_entry(lines: list[str], start: int, checked: bool) -> tuple[str, LockEntry, int]:
    """The entry whose step line is `lines[start]`, and the index after it; ValueError if
    it is laid out otherwise, incomplete or fails its check."""
    name = _matched(_STEP_LINE, lines[start])
    key = _matched(_KEY_LINE, lines[start + 1])
    definition = _matched(_DEFINITION_LINE, lines[start + 2])
    inputs, at = _read_hashes(lines, start + 3, "    inputs:")
    outputs, at = _read_hashes(lines, at, "    outputs:")
    if checked:
        block = "\n".join(lines[start:at]) + "\n"
        if _matched(_CHECK_LINE, lines[at]) != _check(block):
            raise ValueError("the entry fails its check")
        at += 1
    return _key(name), LockEntry(key, definition, inputs, outputs), at


def _read_hashes(lines: list[str], at: int, header: str) -> tuple[dict[str, str], int]:
    line = lines[at]
    if line == header + " {}":
        return {}, at + 1
    if line != header:
        raise ValueError(f"expected {header.strip()!r}")
    hashes: dict[str, str] = {}
    first = at = at + 1
    while at < len(lines) and (match := _HASH_LINE.match(lines[at])):
        hashes[_key(match[1])] = match[2]
        at += 1
    if not hashes or len(hashes) != at - first:
        raise ValueError("an empty or repeated path")
    return hashes, at


def _matched(pattern: re.Pattern[str], line: str) -> str:
    match = pattern.match(line)
    if match is None:
        raise ValueError(f"unexpected line {line!r}")
    return match[1]


def _key(text: str) -> str:
    """A key as `_scalar` wrote it."""
    return json.loads(text) if text.startswith('"') else text


def _check(block: str) -> str:
    """The check of an entry's lines: their crc32, which any flipped bit or cut changes."""
    return f"{zlib.crc32(block.encode('utf-8')):08x}"


def _entry(path: Path, name: str, raw: Any, checked: bool) -> LockEntry:
    try:
        if not isinstance(raw, dict) or not raw.keys() <= _ENTRY_KEYS:
            raise TypeError("not a mapping of the known fields")
        entry = LockEntry(
            key=_digest(raw["key"]),
            definition=_digest(raw["definition"]),
            inputs=_hashes(raw["inputs"]),
            outputs=_hashes(raw["outputs"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(path, f"the entry of step '{name}' is malformed or incomplete") from exc
    if (checked or "check" in raw) and raw.get("check") != _check(_entry_lines(name, entry)):
        raise _corrupt(path, f"the entry of step '{name}' fails its check")
    return entry


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not _DIGEST.match(value):
        raise ValueError(f"not a sha256: {value!r}")
    return value


def _hashes(raw: Any) -> dict[str, str]:
    """A mapping of path to sha256; an empty one is written `{}`, so None means cut short."""
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
    """The block of one step in the lock file, ending with its check."""
    lines = _entry_lines(name, entry)
    return f'{lines}    check: "{_check(lines)}"\n'


def _entry_lines(name: str, entry: LockEntry) -> str:
    """The lines of an entry that its check covers."""
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
    """The lock file text from the rendered blocks of its steps, ending with `END`."""
    head = f"{HEADER}version: {LOCK_VERSION}\nchecks: {CHECKS}\nsteps:"
    head += "\n" if blocks else " {}\n"
    return head + "".join(blocks[name] for name in sorted(blocks)) + END


def _scalar(text: str) -> str:
    """A YAML key: plain when unambiguous, else a JSON (= YAML double-quoted) string."""
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def write_text(path: Path, text: str) -> None:
    """Write rendered lock text atomically and durably."""
    from orchestrator.store.filestore import atomic_write

    atomic_write(path, text.encode("utf-8"))

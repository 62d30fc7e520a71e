"""`include:`: pipeline fragments merged into one document, each entry located in its own file.

A fragment is a YAML mapping of `vars`, `providers`, `steps` and its own `include` (and
optionally `version: 1` and `description`). A file's includes are merged first, in order and
depth first, then its own entries. A file's vars and providers replace those of the files it
includes, in place (as `--set` does); the same var or provider in two included files, or the
same step in any two files, is an error naming both places. A file included twice is merged
once; an include cycle is an error naming the chain.

When any of the files gives `vars` as a list (values files), the merged `vars` is one list:
every file's entries in merge order (a mapping `vars` is one entry), later entries winning as
in a single `vars` list; a var two files declare in a mapping is still checked as above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.core.errors import Diagnostic, PipelineError
from orchestrator.core.suggest import suggest
from orchestrator.language.loader import read_source
from orchestrator.language.source import Origin, PathKey, SourceDocument

SECTIONS = ("vars", "providers", "steps")
FRAGMENT_KEYS = ("version", "description", "include", *SECTIONS)
_OWNERS = {"vars": "var", "providers": "provider", "steps": "step"}


Entries = dict[str, dict[Any, tuple[Any, SourceDocument]]]
"""Per section, each name's value and the document that declares it."""


def read_pipeline(file: Path) -> SourceDocument:
    """Read a pipeline file and merge the fragments it includes into one document."""
    source = read_source(file)
    if not isinstance(source.data, dict) or "include" not in source.data:
        return source
    merger = _Merger(seen={file.resolve()})
    sections = merger.merge(source, (file,))
    data = dict(source.data)
    for section, entries in sections.items():
        if entries or section in data:
            data[section] = {name: value for name, (value, _) in entries.items()}
    origins: dict[tuple[str, Any], Origin] = {
        (section, name): (origin, (section, name))
        for section, entries in sections.items()
        for name, (_, origin) in entries.items()
        if origin is not source
    }
    if merger.listed:
        data["vars"] = [value for value, _, _ in merger.var_entries]
        for index, (_, origin, path) in enumerate(merger.var_entries):
            origins[("vars", index)] = (origin, path)
    return SourceDocument(file, source.text, data, origins, tuple(merger.files))


@dataclass
class _Merger:
    """The state of one merge: the files merged so far."""

    seen: set[Path]
    files: list[Path] = field(default_factory=list)
    var_entries: list[tuple[Any, SourceDocument, tuple[PathKey, ...]]] = field(default_factory=list)
    """Every file's `vars` entries in merge order, each with where it was written."""
    listed: bool = False
    """Whether a file gives `vars` as a list: then the merged vars are `var_entries`."""

    def merge(self, source: SourceDocument, chain: tuple[Path, ...]) -> Entries:
        """The entries of `source` and of the files it includes (`chain`: how it was reached)."""
        _check_sections(source)
        merged: Entries = {section: {} for section in SECTIONS}
        for index, path in enumerate(_include_paths(source)):
            fragment = self._read(source, index, path, chain)
            if fragment is not None:
                _add(merged, self.merge(fragment, (*chain, path)), own=False)
        own = {
            section: {name: (value, source) for name, value in _mapping(source, section).items()}
            for section in SECTIONS
        }
        self._add_vars(source)
        _add(merged, own, own=True)
        return merged

    def _add_vars(self, source: SourceDocument) -> None:
        """Keep the `vars` entries of `source` in order, for the list form."""
        variables = source.data.get("vars")
        if isinstance(variables, list):
            self.listed = True
            for index, entry in enumerate(variables):
                self.var_entries.append((entry, source, ("vars", index)))
        elif variables:
            self.var_entries.append((variables, source, ("vars",)))

    def _read(
        self, source: SourceDocument, index: int, path: Path, chain: tuple[Path, ...]
    ) -> SourceDocument | None:
        """The fragment at `path` (None when it was merged already), checked."""
        where = source.locate(("include", index))
        resolved = path.resolve()
        if any(resolved == link.resolve() for link in chain):
            names = " -> ".join(str(link) for link in (*chain, path))
            raise PipelineError.at(f"include cycle: {names}", where)
        if resolved in self.seen:
            return None
        if not path.is_file():
            entry = source.data["include"][index]
            raise PipelineError.at(f"include '{entry}': no such file ({path})", where)
        self.seen.add(resolved)
        self.files.append(Path(os.path.abspath(path)))
        return _checked(read_source(path, "included file"))


def _add(merged: Entries, new: Entries, *, own: bool) -> None:
    """Add entries to `merged`: a file's own vars and providers replace those it includes; any
    other name declared twice is an error naming both places."""
    problems = []
    for section in SECTIONS:
        for name, entry in new[section].items():
            before = merged[section].get(name)
            if before is not None and (section == "steps" or not own):
                problems.append(_twice(section, name, before[1], entry[1]))
            merged[section][name] = entry
    if problems:
        raise PipelineError(problems)


def _twice(section: str, name: Any, first: SourceDocument, second: SourceDocument) -> Diagnostic:
    """A name declared again: located at the second declaration, naming the first."""
    where = (section, name)
    return Diagnostic(
        f"{_OWNERS[section]} '{name}' is declared twice: here and at"
        f" {first.locate(where, key=True)}",
        second.locate(where, key=True),
    )


def _include_paths(source: SourceDocument) -> list[Path]:
    """The files `source` includes, relative to its folder; a malformed list is an error."""
    entries = source.data.get("include")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise PipelineError.at(
            "'include' must be a list of file paths", source.locate(("include",))
        )
    for index, entry in enumerate(entries):
        if not isinstance(entry, str) or not entry.strip():
            raise PipelineError.at(
                "an 'include' entry must be a file path", source.locate(("include", index))
            )
    return [source.file.parent / entry for entry in entries]


def _mapping(source: SourceDocument, section: str) -> dict[Any, Any]:
    """A section's named entries (none for `vars` written as a list)."""
    value = source.data.get(section)
    return value if isinstance(value, dict) else {}


def _check_sections(source: SourceDocument) -> None:
    """Each of `vars`, `providers` and `steps` a file gives is a mapping (`vars` may be a
    list of values files and mappings)."""
    for name in SECTIONS:
        value = source.data.get(name, {})
        if isinstance(value, list) and name == "vars":
            continue
        if not isinstance(value, dict):
            raise PipelineError.at(
                f"'{name}' must be a mapping of names to entries", source.locate((name,))
            )


def _checked(fragment: SourceDocument) -> SourceDocument:
    """An included file, refused unless it is a mapping of the keys a fragment may have (an
    empty file is an empty mapping)."""
    data = fragment.data
    if data is None:
        return replace(fragment, data={})
    if not isinstance(data, dict):
        raise PipelineError.at(
            "an included file is a mapping of 'vars', 'providers', 'steps' and 'include'",
            fragment.locate(()),
        )
    for key in data:
        if key not in FRAGMENT_KEYS:
            raise PipelineError.at(_unknown_key(key), fragment.locate((key,), key=True))
    if "version" in data and (type(data["version"]) is not int or data["version"] != 1):
        raise PipelineError.at(
            f"unsupported version {data['version']!r}: this orch reads version 1",
            fragment.locate(("version",)),
        )
    return fragment


def _unknown_key(key: Any) -> str:
    if key in ("name", "workdir", "dotenv", "default_provider", "cache"):
        return f"'{key}' belongs to the pipeline file, not to an included file"
    return f"unknown key '{key}' in an included file{suggest(str(key), FRAGMENT_KEYS)}"

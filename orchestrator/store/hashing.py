"""Content hashes of files and folders, a stat cache to skip rereading, and step keys.

A step's key is the sha256 of the canonical JSON (sorted keys, no whitespace) of::

    {"format": KEY_FORMAT, "kind": ..., "definition": <definition hash>,
     "inputs": [[path, sha256], ...]}

where the definition hash is the sha256 of the canonical JSON of
``{"format": KEY_FORMAT, "kind": ..., "definition": {...rendered fields, "outputs": [...]}}``,

with folders and globs among the inputs expanded to their files. Upstream outputs enter by
content, so a rerun that produces the same bytes leaves its dependents' keys unchanged.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from stat import S_ISLNK
from typing import Any

from orchestrator.core.errors import OrchError
from orchestrator.core.paths import escapes_through_symlink, expand_glob, is_dir, is_glob, unescape
from orchestrator.store.digest import canonical_json, is_digest, sha256_bytes, sha256_file

KEY_FORMAT = 2
STAT_CACHE_FORMAT = 2
RACY_WINDOW_NS = 100_000_000
COARSE_RACY_WINDOW_NS = 2_000_000_000
_SECOND_NS = 1_000_000_000
_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG})
"""The errors of reading a path that holds no file."""


_Stamp = tuple[int, int, int, int]
"""inode, mtime_ns, ctime_ns, size"""


def _stamp(stat: os.stat_result) -> _Stamp:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)


class PathEscapes(OrchError):
    """A file met while hashing is a symlink that leads outside the workdir."""

    exit_code = 2


class StatCache:
    """Remembers each file's sha256 with its inode, mtime, ctime and size.

    A file is rehashed unless all four match. Files modified too recently are not remembered,
    since a change within the same clock tick could leave every stamp equal: within 100 ms, or
    two seconds where the filesystem keeps whole seconds only (FAT, some network filesystems).
    """

    def __init__(self, file: Path | None = None, root: Path | None = None) -> None:
        """Entries are kept in `file`; a symlink leading outside `root` is refused."""
        self.file = file
        self.root = os.path.realpath(root) if root is not None else None
        self._entries: dict[str, tuple[_Stamp, str]] = {}
        self._dirty = False
        if file is not None:
            self._entries = _read_stat_cache(file)

    def sha256(self, path: Path | str) -> str | None:
        """The content hash of `path`, or None if there is no file there.

        A file that is there but cannot be read (permission denied, an I/O error) raises its
        OSError: taking it for a missing file would misreport it as removed.
        """
        key = str(path)
        try:
            stat = os.lstat(key)
            if S_ISLNK(stat.st_mode):
                self._check_link(key)
                stat = os.stat(key)
        except OSError as exc:
            _raise_unless_absent(exc)
            return None
        stamp = _stamp(stat)
        known = self._entries.get(key)
        if known is not None and known[0] == stamp:
            return known[1]
        try:
            digest = sha256_file(Path(key))
        except OSError as exc:
            _raise_unless_absent(exc)
            return None
        if time.time_ns() - stat.st_mtime_ns > _racy_window(stat.st_mtime_ns):
            self._entries[key] = (stamp, digest)
            self._dirty = True
        elif known is not None:
            del self._entries[key]
            self._dirty = True
        return digest

    def _check_link(self, path: str) -> None:
        if self.root is None:
            return
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise PathEscapes(f"'{path}' is a symlink leading outside the workdir (to {real})")

    def save(self) -> None:
        """Write the cache atomically if anything changed."""
        if self.file is None or not self._dirty:
            return
        from orchestrator.store.filestore import atomic_write
        from orchestrator.store.integrity import seal

        rows = {path: [*stamp, digest] for path, (stamp, digest) in self._entries.items()}
        self.file.parent.mkdir(parents=True, exist_ok=True)
        record = canonical_json({"format": STAT_CACHE_FORMAT, "files": rows})
        atomic_write(self.file, seal(record), durable=False)
        self._dirty = False


def _raise_unless_absent(error: OSError) -> None:
    """Raise `error` again unless it says there is no file."""
    if error.errno not in _ABSENT:
        raise error


def _racy_window(mtime_ns: int) -> int:
    """How long after a change a file's stamps may still miss the next change."""
    return COARSE_RACY_WINDOW_NS if mtime_ns % _SECOND_NS == 0 else RACY_WINDOW_NS


def _read_stat_cache(file: Path) -> dict[str, tuple[_Stamp, str]]:
    """The saved entries, each checked; a cache that is unreadable, foreign or fails its
    checksum is simply empty, so every file is hashed afresh."""
    from orchestrator.store.integrity import unseal

    try:
        record = unseal(file.read_bytes())
        data = json.loads(record) if record is not None else None
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != STAT_CACHE_FORMAT:
        return {}
    rows = data.get("files")
    if not isinstance(rows, dict):
        return {}
    entries = {}
    for path, row in rows.items():
        entry = _stat_entry(row)
        if entry is not None:
            entries[path] = entry
    return entries


def _stat_entry(row: Any) -> tuple[_Stamp, str] | None:
    """A saved `[inode, mtime_ns, ctime_ns, size, sha256]`, None unless well-formed."""
    if type(row) is not list or len(row) != 5:
        return None
    inode, mtime, ctime, size, digest = row
    if type(inode) is type(mtime) is type(ctime) is type(size) is int and is_digest(digest):
        return (inode, mtime, ctime, size), digest
    return None


class Hasher:
    """Hashes declared paths under a workdir, through a stat cache."""

    def __init__(self, workdir: Path, stat_cache: StatCache | None = None) -> None:
        self.workdir = workdir
        self.stat_cache = stat_cache or StatCache()

    def files(self, declared: str, exclude: Callable[[str], bool] | None = None) -> list[str]:
        """The files a declared path stands for: itself, a folder's files, a glob's matches."""
        if is_glob(declared):
            found = _confined_matches(self.workdir, declared)
        elif is_dir(declared):
            found = _walk(self.workdir, unescape(declared))
        else:
            found = [unescape(declared)]
        return [path for path in found if exclude is None or not exclude(path)]

    def hashes(
        self, declared: Iterable[str], exclude: Callable[[str], bool] | None = None
    ) -> dict[str, str | None]:
        """Each file's sha256 (None when missing), folders and globs expanded, sorted by path;
        `declared` are patterns, as inputs are declared (see `paths`)."""
        root = f"{self.workdir}/"
        sha256 = self.stat_cache.sha256
        result: dict[str, str | None] = {}
        for path in declared:
            if is_dir(path) or is_glob(path) or exclude is not None:
                for file in self.files(path, exclude):
                    result[file] = sha256(root + file)
            else:
                result[unescape(path)] = sha256(root + unescape(path))
        return dict(sorted(result.items())) if len(result) > 1 else result


def _confined_matches(workdir: Path, pattern: str) -> list[str]:
    """A glob's matches; PathEscapes if one lies in a folder leading outside the workdir (a
    wildcard or a named folder of the pattern can pass through a symlink)."""
    found = expand_glob(workdir, pattern)
    for folder in sorted({posixpath.dirname(path) for path in found} - {""}):
        if escapes_through_symlink(workdir, folder):
            raise PathEscapes(
                f"'{folder}/', matched by '{pattern}', leads outside the workdir through a symlink"
            )
    return found


def _walk(workdir: Path, folder: str) -> list[str]:
    """The files under a folder; symlinked folders inside it are listed as if they were files,
    so that hashing meets them (and refuses those leading outside). PathEscapes if the folder
    itself leads outside the workdir."""
    if escapes_through_symlink(workdir, folder):
        raise PathEscapes(f"'{folder}' leads outside the workdir through a symlink")
    root = workdir / folder
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        relative = Path(dirpath).relative_to(workdir).as_posix()
        linked = [name for name in dirnames if os.path.islink(os.path.join(dirpath, name))]
        found.extend(f"{relative}/{name}" for name in [*filenames, *linked])
    return sorted(found)


# --------------------------------------------------------------------------- keys


def definition_hash(kind: str, definition: Mapping[str, Any]) -> str:
    """The sha256 of what a step does, without its inputs."""
    return sha256_bytes(
        canonical_json({"format": KEY_FORMAT, "kind": kind, "definition": definition})
    )


def step_key(kind: str, definition: str, inputs: Mapping[str, str | None]) -> str:
    """The content key of a step: its definition hash and the content of each input file."""
    material = {
        "format": KEY_FORMAT,
        "kind": kind,
        "definition": definition,
        "inputs": [[path, digest] for path, digest in sorted(inputs.items())],
    }
    return sha256_bytes(canonical_json(material))

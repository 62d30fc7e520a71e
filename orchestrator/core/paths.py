"""Declared paths: normalising them inside the workdir, globs, and how two paths relate.

A declared path is POSIX-style and relative to the workdir; a trailing ``/`` marks a directory,
and ``*``, ``?`` or ``[`` mark a glob (``**`` crosses folders). Hidden files match only when
the pattern names the dot itself. A declared input is a pattern: ``[*]``, ``[?]`` and ``[[]``
stand for the characters themselves (as Python's ``glob.escape`` writes them), so a name holding
them is declared escaped and stays one file. A `LiteralPath` (a foreach glob's match, another
step's output) is such a name wherever it goes. Outputs are names, kept unescaped.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Iterable
from pathlib import Path

_GLOB = re.compile(r"[*?\[]")
_ESCAPED = re.compile(r"\[([*?\[])\]")
_DRIVE = re.compile(r"[A-Za-z]:(?:[/\\]|\Z)")
NAME_MAX = 255
"""The longest file name, in bytes, that most file systems (ext4, XFS, btrfs) allow."""


class PathRefused(ValueError):
    """A declared path that may not be used: absolute, escaping the workdir or empty."""


class LiteralPath(str):
    """A path that names a file: its ``*``, ``?`` and ``[`` are characters, never a glob."""

    __slots__ = ()


def escape(name: str) -> str:
    """The pattern that matches exactly the file `name`."""
    return _GLOB.sub(lambda found: f"[{found[0]}]", name)


def unescape(pattern: str) -> str:
    """The name a pattern without wildcards stands for."""
    return _ESCAPED.sub(r"\1", pattern) if "[" in pattern else str(pattern)


def declared(value: object) -> str:
    """A value as a declared path: a `LiteralPath` escaped, anything else as written."""
    return escape(value) if isinstance(value, LiteralPath) else str(value)


def is_glob(path: str) -> bool:
    """Whether the path is a glob pattern (has a wildcard that is not escaped)."""
    if "[" not in path:  # nothing escaped: the common case, without a regex
        return "*" in path or "?" in path
    return _GLOB.search(_ESCAPED.sub("", path)) is not None


def name_of(path: str) -> str:
    """How a declared path reads to a user: the file's name, or the glob as written."""
    return path if is_glob(path) else unescape(path)


def cut(name: str, size: int) -> str:
    """`name` cut to at most `size` bytes of UTF-8, on a character boundary."""
    return name.encode()[:size].decode(errors="ignore")


def too_long(name: str) -> str | None:
    """The first component of the path `name` longer than NAME_MAX bytes, if any."""
    return next((part for part in name.split("/") if len(part.encode()) > NAME_MAX), None)


def is_dir(path: str) -> bool:
    """Whether the path declares a directory."""
    return path.endswith("/")


def normalize(path: str) -> str:
    """The canonical relative form of a declared path, or PathRefused saying why not."""
    if not path.strip():
        raise PathRefused("empty path")
    if "\0" in path:
        raise PathRefused(f"path {path!r} holds a NUL character")
    if path.startswith(("/", "\\", "~")) or _DRIVE.match(path):
        raise PathRefused(f"absolute path '{path}': paths are relative to the workdir")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise PathRefused(f"path '{path}' escapes the workdir")
    if normal == ".":
        raise PathRefused(f"path '{path}' names the workdir itself")
    return normal + "/" if is_dir(path) else normal


def escapes_through_symlink(workdir: Path, path: str) -> bool:
    """Whether the deepest existing part of `path` resolves outside the workdir.

    Only a path passing through a symlink (or naming `..`) is resolved: one lstat per part
    tells the rest apart, where resolving both paths would lstat every part of the workdir too.
    """
    parts = path.rstrip("/").split("/")
    if ".." not in parts and not path.startswith("/"):
        current = os.fspath(workdir)
        for part in parts:
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except OSError:
                return False  # what does not exist cannot lead anywhere
            if stat.S_ISLNK(mode):
                break
            if not stat.S_ISDIR(mode):
                return False
        else:
            return False
    root = os.path.realpath(workdir)
    real = os.path.realpath(os.path.join(root, path.rstrip("/")))
    return not (real == root or real.startswith(root + os.sep))


def _glob_reaches_into(pattern: str, directory: str) -> bool:
    """Whether a glob can match some file inside `directory`."""
    from wcmatch import fnmatch

    pattern_parts = pattern.split("/")
    dir_parts = directory.rstrip("/").split("/")
    for depth, dir_part in enumerate(dir_parts):
        if depth >= len(pattern_parts):
            return False
        if pattern_parts[depth] == "**":
            return True
        if not fnmatch.fnmatch(dir_part, _wc(pattern_parts[depth])):
            return False
    return len(pattern_parts) > len(dir_parts)


def glob_matches(pattern: str, path: str) -> bool:
    """Whether a file path matches a glob pattern."""
    from wcmatch import glob

    return bool(glob.globmatch(path, _wc(pattern), flags=glob.GLOBSTAR))


def expand_glob(workdir: Path, pattern: str) -> list[str]:
    """The files under `workdir` matching `pattern`, sorted, as workdir-relative paths."""
    from wcmatch import glob

    found = glob.glob(_wc(pattern), root_dir=str(workdir), flags=glob.GLOBSTAR)
    # Folders are left out here: wcmatch's NODIR also drops a file named "\".
    return sorted(str(p) for p in found if not os.path.isdir(os.path.join(workdir, p)))


def _wc(pattern: str) -> str:
    """The pattern as wcmatch reads it: a backslash is a plain character, as in `glob`."""
    return pattern.replace("\\", "\\\\")


def reads_from(input_path: str, output_path: str) -> bool:
    """Whether reading `input_path` may read what writing `output_path` produces.

    True when they are the same path, when one is a directory holding the other, or when the
    input is a glob that matches the output or reaches into it.
    """
    if is_glob(input_path):
        if is_dir(output_path):
            return _glob_reaches_into(input_path, output_path)
        return glob_matches(input_path, output_path)
    return overlaps(unescape(input_path), output_path)


def overlaps(a: str, b: str) -> bool:
    """Whether two non-glob paths are the same or one is a directory holding the other."""
    a_dir, b_dir = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a_dir == b_dir or (is_dir(a) and b.startswith(a)) or (is_dir(b) and a.startswith(b))


def is_within(path: str, name: str) -> bool:
    """Whether the file `path` is the file or folder `name` (an output, say) or lies inside it."""
    if is_dir(name):
        return path.startswith(name)
    return path == name


def covers(declared: str, path: str) -> bool:
    """Whether the file `path` is among those a declared input stands for."""
    if is_glob(declared):
        return glob_matches(declared, path)
    return is_within(path, unescape(declared))


def excluded(excludes: Iterable[str], path: str) -> bool:
    """Whether an exclusion (a glob, folder or file, declared without its ``!``) takes out the
    file `path`."""
    return any(covers(exclusion, path) for exclusion in excludes)


def selects(declared: Iterable[str], excludes: Iterable[str], path: str) -> bool:
    """Whether the file `path` is among a step's inputs: named by one, or in a declared folder
    or matched by a declared glob and not excluded."""
    found = False
    for pattern in declared:
        if is_glob(pattern) or is_dir(pattern):
            found = found or covers(pattern, path)
        elif unescape(pattern) == path:
            return True
    return found and not excluded(excludes, path)


def exists(workdir: Path, path: str) -> bool:
    """Whether a declared path is there: a file, a folder (``dir/``), or a glob with matches."""
    if is_glob(path):
        return bool(expand_glob(workdir, path))
    target = f"{workdir}/{unescape(path)}"
    return os.path.isdir(target) if is_dir(path) else os.path.exists(target)

"""A step's output files before a build replaces them: hand edits kept, stale files cleared.

Bytes orch recorded in the lock file for an output are orch's own: they are in the cache, or
the step makes them again. Any other bytes at an output path (an edit, a file added to an output
folder, a file that was there before the first build) are kept in the cache before a build
overwrites or removes them, and `orch cache cat` brings them back.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.core.paths import PathRefused, is_dir, is_within, normalize
from orchestrator.store.digest import sha256_stream
from orchestrator.store.filestore import confined_rmdir, confined_tree, confined_unlink

if TYPE_CHECKING:
    from orchestrator.plan.compiled import PlannedStep
    from orchestrator.store.cache import Cache

KeptReason = Literal["edited", "unrecorded"]


@dataclass(frozen=True)
class Kept:
    """Bytes kept in the cache before a build replaced them: the data of `file.kept`."""

    path: str
    sha256: str
    size_bytes: int
    reason: KeptReason
    """`edited`: orch recorded other bytes for the path; `unrecorded`: it recorded none."""
    command: str
    """The shell command, run from the folder orch was started in, that puts the bytes back."""

    def as_event_data(self) -> dict[str, Any]:
        """The fields of the `file.kept` event."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "reason": self.reason,
            "command": self.command,
        }


def declares(step: PlannedStep, path: str) -> bool:
    """Whether `path` is an output file of the step: one it declares, or one of its own files
    inside a folder it declares. Anything else (a source file, a path with `..`, another
    step's output) is not the step's to write."""
    try:
        if is_dir(path) or normalize(path) != path:
            return False
    except PathRefused:
        return False
    if path in step.outputs:
        return True
    return any(is_dir(out) and path.startswith(out) for out in step.outputs) and step.owns(path)


def unrecorded(current: Mapping[str, str | None], recorded: Mapping[str, str]) -> list[str]:
    """The files present whose bytes differ from what the lock file records for them."""
    return [path for path, digest in current.items() if digest and recorded.get(path) != digest]


class Keeper:
    """Keeps unrecorded bytes in the cache and says how to bring them back."""

    def __init__(self, cache: Cache, workdir: Path, pipeline: Path, cwd: Path) -> None:
        self.cache = cache
        self.workdir = workdir
        self.pipeline = pipeline
        self.cwd = cwd

    def keep(self, paths: Iterable[str], recorded: Mapping[str, str]) -> list[Kept]:
        """Keep each file's bytes unless they are the recorded ones (or the file is gone)."""
        kept = []
        for path in paths:
            file = self.workdir / path
            try:
                with file.open("rb") as handle:
                    digest, size = sha256_stream(handle)
            except FileNotFoundError:
                continue
            if recorded.get(path) == digest:
                continue  # changed back since it was hashed: orch's own bytes
            self.cache.keep(path, file, digest)
            reason: KeptReason = "edited" if path in recorded else "unrecorded"
            kept.append(Kept(path, digest, size, reason, self.command(digest, path)))
        return kept

    def command(self, digest: str, path: str) -> str:
        """`orch cache cat DIGEST [PIPELINE] > PATH`, exact when run from `cwd`."""
        words = ["orch", "cache", "cat", digest]
        if os.path.realpath(self.cwd) != os.path.realpath(self.workdir):
            words.append(_relative(self.pipeline, self.cwd))  # ./.orch/cache is not the one
        return f"{shlex.join(words)} > {shlex.quote(_relative(self.workdir / path, self.cwd))}"


def _relative(path: Path, cwd: Path) -> str:
    return os.path.relpath(path.absolute(), cwd)


def clear(workdir: Path, step: PlannedStep, files: Iterable[str]) -> None:
    """Remove the step's output files, then the folders of its outputs left empty (a command
    then runs as in a fresh build); folders holding other steps' outputs stay.

    Nothing is removed through a symlink leading outside the workdir (WriteRefused)."""
    for path in files:
        confined_unlink(workdir, path)
    for folder in (out for out in step.outputs if is_dir(out)):
        _prune(workdir, folder, step.nested)


def _prune(workdir: Path, folder: str, nested: tuple[str, ...]) -> None:
    """Remove the empty folders under `folder` (itself included), deepest first."""
    found, _ = confined_tree(workdir, folder)
    for relative in sorted(found, key=lambda p: p.count("/"), reverse=True):
        if any(is_within(other, relative) or relative.startswith(other) for other in nested):
            continue
        confined_rmdir(workdir, relative)  # left alone when not empty

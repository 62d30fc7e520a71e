"""The content-addressed cache under `<workdir>/.orch/cache/`.

    objects/ab/cdef…   each output file's bytes, named by their sha256
    actions/<key>.json a step key → its output paths with their sha256, and metadata
    kept/<sha256>.json a hand edit a build kept before overwriting or removing it

A step whose key has an action entry is restored from it instead of run; LLM replies are cached
the same way, as the outputs of their step. Nothing read back is trusted: an action must name
only paths its step declares and well-formed digests, and every object is checked against its
digest. Restores write through `safe_write_file`, so they are atomic and leave unchanged files
alone. File content is streamed in chunks, never held whole in memory. An action's or a kept
edit's mtime is its last use, for `gc`.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.store.digest import canonical_json, is_digest, sha256_file
from orchestrator.store.filestore import (
    Copy,
    DigestMismatch,
    Fill,
    WriteResult,
    atomic_write,
    safe_write_file,
)

ACTION_FORMAT = 1
KEPT_FORMAT = 1


class CorruptObject(OSError):
    """An object whose bytes no longer match its digest, or one that is missing."""


@dataclass(frozen=True)
class ActionResult:
    """A cached step result: its outputs' hashes and what running it cost."""

    key: str
    outputs: Mapping[str, str]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lookup:
    """What the cache holds for a key: a usable result, or why there is none.

    `reason` is None for an ordinary miss (no record) and says what is wrong with a record
    that exists but cannot be used.
    """

    result: ActionResult | None
    reason: str | None = None


@dataclass(frozen=True)
class CacheInfo:
    """Sizes of the cache."""

    actions: int
    objects: int
    bytes: int
    kept: int = 0


@dataclass(frozen=True)
class GcResult:
    """What `gc` removed."""

    actions_removed: int
    objects_removed: int
    bytes_freed: int
    kept_removed: int = 0


class Cache:
    """Content-addressed objects and the actions that name them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.actions = root / "actions"
        self.kept = root / "kept"

    def _object(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    def _action(self, key: str) -> Path:
        return self.actions / f"{key}.json"

    def _put(self, source: Path, digest: str, *, durable: bool = False) -> None:
        """Copy the file `source` in chunks into the object `digest`; DigestMismatch, and
        nothing written, unless its bytes have that sha256."""
        target = self._object(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, Copy(source, digest), durable=durable)

    def _stored(self, source: Path, digest: str) -> bool:
        """Whether the file `source` holds the bytes of `digest`, copied into the cache unless
        they are there already."""
        if self._object(digest).is_file():
            return sha256_file(source) == digest
        try:
            self._put(source, digest)
        except DigestMismatch:
            return False
        return True

    def checked_object(self, digest: str) -> Path:
        """The file of an object whose bytes match its digest, read in chunks.

        CorruptObject if it is missing or its bytes differ; a damaged object is removed, so
        the next store of those bytes writes it afresh.
        """
        if not is_digest(digest):
            raise CorruptObject(f"'{digest}' is not a sha256")
        target = self._object(digest)
        try:
            found = sha256_file(target)
        except FileNotFoundError:
            raise CorruptObject(f"no object {digest} in {self.root}") from None
        if found != digest:
            raise self._damaged(digest)
        return target

    def _damaged(self, digest: str) -> CorruptObject:
        """Remove an object whose bytes do not match its digest; the error saying so."""
        self._object(digest).unlink(missing_ok=True)
        return CorruptObject(f"the object {digest} does not match its digest (removed it)")

    def keep(self, path: str, source: Path, digest: str) -> None:
        """Keep the bytes of `source` (whose sha256 is `digest`), which a build is about to
        overwrite or remove at `path`; DigestMismatch if they change meanwhile.

        The object is protected from `gc` by a record under `kept/`, aged like an action.
        """
        if not _holds(self._object(digest), digest):  # absent, or damaged: written afresh
            self._put(source, digest, durable=True)  # the only copy once the file is replaced
        record = {"format": KEPT_FORMAT, "sha256": digest, "path": path, "time": time.time()}
        self.kept.mkdir(parents=True, exist_ok=True)
        atomic_write(self.kept / f"{digest}.json", canonical_json(record))

    def store(
        self, key: str, workdir: Path, outputs: Mapping[str, str], meta: Mapping[str, Any]
    ) -> None:
        """Keep the output files (path → expected sha256) and record them under `key`.

        A file whose content no longer matches its expected hash is not cached at all.
        """
        for path, digest in outputs.items():
            if not self._stored(workdir / path, digest):
                return
        record = {"format": ACTION_FORMAT, "key": key, "outputs": dict(outputs), "meta": dict(meta)}
        self.actions.mkdir(parents=True, exist_ok=True)
        atomic_write(self._action(key), canonical_json(record), durable=False)

    def object_file(self, digest: str) -> Path:
        """Where the object `digest` is kept (it may be absent)."""
        return self._object(digest)

    def action_file(self, key: str) -> Path:
        """Where the action record of `key` is kept (it may be absent)."""
        return self._action(key)

    def receive(self, digest: str, fill: Fill) -> None:
        """Write the object `digest` from `fill` (which must raise unless the bytes have that
        sha256: the object is then left as it was)."""
        target = self._object(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, fill, durable=False)

    def adopt(self, key: str, raw: bytes, declares: Callable[[str], bool]) -> ActionResult:
        """An action record from elsewhere, checked as `find` checks one (RecordRefused saying
        what is wrong), then kept; its objects must be received first."""
        action = read_action(raw, key, declares)
        for path, digest in action.outputs.items():
            if not _holds(self._object(digest), digest):
                raise RecordRefused(f"the object of '{path}' does not match its digest")
        self.actions.mkdir(parents=True, exist_ok=True)
        atomic_write(self._action(key), raw, durable=False)
        return action

    def find(self, key: str, declares: Callable[[str], bool] | None = None) -> Lookup:
        """The action recorded for `key`, or why there is none.

        A record is refused when it is unreadable, written for another key or format, names a
        digest that is not a sha256, names a path `declares` rejects, or lacks an object.
        """
        try:
            raw = self._action(key).read_bytes()
        except FileNotFoundError:
            return Lookup(None)
        except OSError as exc:
            return Lookup(None, f"cannot read the action record: {exc.strerror or exc}")
        try:
            action = read_action(raw, key, declares)
        except RecordRefused as exc:
            return Lookup(None, str(exc))
        for path, digest in action.outputs.items():
            if not self._object(digest).is_file():
                return Lookup(None, f"the object of '{path}' is missing")
        return Lookup(action)

    def check(self, action: ActionResult) -> None:
        """Check every object of an action against its digest (else CorruptObject), so a
        restore writes all of its outputs or none."""
        for path, digest in sorted(action.outputs.items()):
            try:
                self.checked_object(digest)
            except CorruptObject as exc:
                raise CorruptObject(f"'{path}': {exc}") from None

    def write(self, action: ActionResult, workdir: Path) -> list[WriteResult]:
        """Write a checked action's outputs into the workdir, streamed, and mark it used.

        An object damaged since it was checked is removed and never lands: CorruptObject.
        """
        results = []
        for path, digest in sorted(action.outputs.items()):
            try:
                results.append(safe_write_file(workdir, path, self._object(digest), digest))
            except DigestMismatch:
                raise CorruptObject(f"'{path}': {self._damaged(digest)}") from None
        os.utime(self._action(action.key))
        return results

    def info(self) -> CacheInfo:
        """How many actions, kept edits and objects the cache holds, and their size on disk."""
        actions = _listed(self.actions)
        kept = _listed(self.kept)
        objects = (
            [p for p in self.objects.rglob("*") if p.is_file()] if self.objects.is_dir() else []
        )
        size = sum(p.stat().st_size for p in [*actions, *kept, *objects])
        return CacheInfo(len(actions), len(objects), size, len(kept))

    def gc(self, *, max_age_s: float | None = None, max_bytes: int | None = None) -> GcResult:
        """Drop actions unused for `max_age_s`, then the least recently used ones until the
        cache fits in `max_bytes`, then every object that no remaining action names.

        Kept edits count as actions naming one object, aged from when they were kept."""
        before = self.info()
        records = self._records()
        now = time.time()
        expired = [r for r in records if max_age_s is not None and now - r.used > max_age_s]
        kept = [r for r in records if r not in expired]
        sizes = self._object_sizes()
        counts = Counter(digest for record in kept for digest in record.digests)
        total = sum(r.size for r in kept) + sum(sizes.get(d, 0) for d in counts)
        while max_bytes is not None and kept and total > max_bytes:
            oldest = kept.pop(0)
            expired.append(oldest)
            total -= oldest.size
            for digest in oldest.digests:
                counts[digest] -= 1
                if counts[digest] == 0:
                    total -= sizes.get(digest, 0)
                    del counts[digest]
        for record in expired:
            record.path.unlink(missing_ok=True)
        for digest in sizes.keys() - counts.keys():
            self._object(digest).unlink(missing_ok=True)
        after = self.info()
        kept_removed = sum(record.path.parent == self.kept for record in expired)
        return GcResult(
            len(expired) - kept_removed,
            before.objects - after.objects,
            before.bytes - after.bytes,
            kept_removed,
        )

    def _records(self) -> list[_Record]:
        """Every action and kept edit, least recently used first; unreadable actions count as
        naming nothing."""
        records = []
        for path in [*_listed(self.actions), *_listed(self.kept)]:
            try:
                stat = path.stat()
            except OSError:
                continue
            records.append(_Record(path, stat.st_mtime, stat.st_size, self._named(path)))
        return sorted(records, key=lambda r: (r.used, r.path.name))

    def _named(self, record: Path) -> frozenset[str]:
        """The objects a record protects: a kept edit its own (named by its file), an action
        those of its outputs."""
        if record.parent == self.kept:
            return frozenset({record.stem})
        try:
            return frozenset(json.loads(record.read_bytes())["outputs"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return frozenset()

    def _object_sizes(self) -> dict[str, int]:
        if not self.objects.is_dir():
            return {}
        return {
            p.parent.name + p.name: p.stat().st_size for p in self.objects.rglob("*") if p.is_file()
        }


class RecordRefused(ValueError):
    """An action record that cannot be used, and why."""


def read_action(
    raw: bytes, key: str, declares: Callable[[str], bool] | None = None
) -> ActionResult:
    """The action in a record's bytes, or RecordRefused saying what is wrong with it: not JSON,
    another format or key, a digest that is not a sha256, a path `declares` rejects."""
    try:
        record = json.loads(raw)
    except ValueError:
        raise RecordRefused("the action record is not valid JSON") from None
    if not isinstance(record, dict) or record.get("format") != ACTION_FORMAT:
        raise RecordRefused("the action record has an unknown format")
    if record.get("key") != key:
        raise RecordRefused("the action record is for another key")
    outputs, meta = record.get("outputs"), record.get("meta") or {}
    if not isinstance(outputs, dict) or not isinstance(meta, dict):
        raise RecordRefused("the action record is malformed")
    for path, digest in outputs.items():
        if not is_digest(digest):
            raise RecordRefused(f"the action record's digest of '{path}' is not a sha256")
        if declares is not None and not declares(path):
            raise RecordRefused(f"the action record names '{path}', not an output of the step")
    return ActionResult(key, dict(outputs), dict(meta))


def _holds(file: Path, digest: str) -> bool:
    """Whether `file` holds the bytes of `digest` (read in chunks)."""
    try:
        return sha256_file(file) == digest
    except OSError:
        return False


def _listed(folder: Path) -> list[Path]:
    """The records (`*.json`) in a folder of the cache, if it exists."""
    return list(folder.glob("*.json")) if folder.is_dir() else []


@dataclass(frozen=True)
class _Record:
    path: Path
    used: float
    size: int
    digests: frozenset[str]

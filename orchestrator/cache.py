"""The content-addressed cache under `<workdir>/.orch/cache/`.

    objects/ab/cdef…   each output file's bytes, named by their sha256
    actions/<key>.json a step key → its output paths with their sha256, and metadata

A step whose key has an action entry is restored from it instead of run; LLM replies are cached
the same way, as the outputs of their step. Restores write through `safe_write`, so they are
atomic and leave unchanged files alone. An action file's mtime is its last use, for `gc`.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .filestore import WriteResult, atomic_write, safe_write
from .hashing import canonical_json, sha256_bytes

ACTION_FORMAT = 1


@dataclass(frozen=True)
class Action:
    """A cached step result: its outputs' hashes and what running it cost."""

    key: str
    outputs: Mapping[str, str]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CacheInfo:
    """Sizes of the cache."""

    actions: int
    objects: int
    bytes: int


@dataclass(frozen=True)
class GcResult:
    """What `gc` removed."""

    actions_removed: int
    objects_removed: int
    bytes_freed: int


class Cache:
    """Content-addressed objects and the actions that name them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.actions = root / "actions"

    def _object(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    def _action(self, key: str) -> Path:
        return self.actions / f"{key}.json"

    def store(
        self, key: str, workdir: Path, outputs: Mapping[str, str], meta: Mapping[str, Any]
    ) -> None:
        """Keep the output files (path → expected sha256) and record them under `key`.

        A file whose content no longer matches its expected hash is not cached at all.
        """
        for path, digest in outputs.items():
            data = (workdir / path).read_bytes()
            if sha256_bytes(data) != digest:
                return
            target = self._object(digest)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, data, durable=False)
        record = {"format": ACTION_FORMAT, "key": key, "outputs": dict(outputs), "meta": dict(meta)}
        self.actions.mkdir(parents=True, exist_ok=True)
        atomic_write(self._action(key), canonical_json(record), durable=False)

    def lookup(self, key: str) -> Action | None:
        """The action recorded for `key` if it and all its objects are present."""
        try:
            record = json.loads(self._action(key).read_bytes())
            if record.get("format") != ACTION_FORMAT or record.get("key") != key:
                return None
            action = Action(key, dict(record["outputs"]), dict(record.get("meta") or {}))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        if not all(self._object(d).is_file() for d in action.outputs.values()):
            return None
        return action

    def restore(self, action: Action, workdir: Path) -> list[WriteResult]:
        """Write an action's outputs into the workdir; corrupt objects make it return []."""
        contents = {}
        for path, digest in action.outputs.items():
            data = self._object(digest).read_bytes()
            if sha256_bytes(data) != digest:
                return []
            contents[path] = data
        results = [safe_write(workdir, path, data) for path, data in sorted(contents.items())]
        os.utime(self._action(action.key))
        return results

    def info(self) -> CacheInfo:
        """How many actions and objects the cache holds, and their size on disk."""
        actions = list(self.actions.glob("*.json")) if self.actions.is_dir() else []
        objects = (
            [p for p in self.objects.rglob("*") if p.is_file()] if self.objects.is_dir() else []
        )
        size = sum(p.stat().st_size for p in [*actions, *objects])
        return CacheInfo(len(actions), len(objects), size)

    def gc(self, *, max_age_s: float | None = None, max_bytes: int | None = None) -> GcResult:
        """Drop actions unused for `max_age_s`, then the least recently used ones until the
        cache fits in `max_bytes`, then every object that no remaining action names."""
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
        return GcResult(len(expired), before.objects - after.objects, before.bytes - after.bytes)

    def _records(self) -> list[_Record]:
        """Every action file, least recently used first; unreadable ones count as naming nothing."""
        records = []
        for path in self.actions.glob("*.json") if self.actions.is_dir() else []:
            try:
                stat = path.stat()
            except OSError:
                continue
            try:
                digests = frozenset(json.loads(path.read_bytes())["outputs"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                digests = frozenset()
            records.append(_Record(path, stat.st_mtime, stat.st_size, digests))
        return sorted(records, key=lambda r: (r.used, r.path.name))

    def _object_sizes(self) -> dict[str, int]:
        if not self.objects.is_dir():
            return {}
        return {
            p.parent.name + p.name: p.stat().st_size for p in self.objects.rglob("*") if p.is_file()
        }


@dataclass(frozen=True)
class _Record:
    path: Path
    used: float
    size: int
    digests: frozenset[str]

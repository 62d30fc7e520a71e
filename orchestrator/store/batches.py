"""Records of the provider batches a build submitted: `.orch/batches/<name>.json`, one per batch.

A record is written (atomically) before the build waits on its batch, and removed once the
batch's results are read; a build killed meanwhile finds it and polls the same batch again
instead of submitting (and paying for) its requests twice. Records are untrusted input: every
field is checked, and one that does not pass is reported as damaged, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.store.filestore import atomic_write

VERSION = 1
KINDS = frozenset({"openai", "anthropic"})
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
"""A batch id goes into a URL path: nothing but these characters."""
CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TEXT_LIMIT = 2000
_MAX_RECORD_BYTES = 16 * 1024 * 1024


class DamagedRecord(ValueError):
    """A record that cannot be read or does not have the expected shape."""


@dataclass(frozen=True)
class BatchRecord:
    """One submitted batch: where it went, its id, and what each of its requests carries."""

    provider: str
    kind: str
    base_url: str
    """The address without credentials."""
    batch_id: str
    submitted: str
    """When it was submitted, ISO 8601 UTC."""
    requests: Mapping[str, str]
    """custom_id → sha256 of the request body it carries."""
    steps: Mapping[str, tuple[str, ...]]
    """custom_id → the steps waiting on it (for `orch status`)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "provider": self.provider,
            "kind": self.kind,
            "base_url": self.base_url,
            "batch_id": self.batch_id,
            "submitted": self.submitted,
            "requests": {
                custom_id: {"sha256": digest, "steps": list(self.steps.get(custom_id, ()))}
                for custom_id, digest in self.requests.items()
            },
        }


def file_name(record: BatchRecord) -> str:
    """The record's file name: a digest of where the batch is, so any id is a safe name."""
    where = f"{record.kind}\n{record.base_url}\n{record.batch_id}".encode()
    return hashlib.sha256(where).hexdigest()[:24] + ".json"


def write(folder: Path, record: BatchRecord) -> Path:
    """Write `record` atomically into `folder` (created if needed); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(record)
    atomic_write(path, json.dumps(record.as_json(), indent=1).encode())
    return path


def remove(folder: Path, record: BatchRecord) -> None:
    """Forget `record`: its batch's results were read."""
    (folder / file_name(record)).unlink(missing_ok=True)


def scan(folder: Path) -> Iterator[tuple[Path, BatchRecord | DamagedRecord]]:
    """Each record file in `folder` with its record, or why it cannot be used; nothing when
    the folder does not exist."""
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return
    for path in paths:
        try:
            yield path, read(path)
        except DamagedRecord as damaged:
            yield path, damaged


def waiting(folder: Path) -> list[tuple[str, str, str]]:
    """(step, batch id, submitted) of each step a readable record says waits on a batch; the
    folder is read only when it exists."""
    if not folder.is_dir():
        return []
    found = []
    for _, record in scan(folder):
        if isinstance(record, BatchRecord):
            for steps in record.steps.values():
                found += [(step, record.batch_id, record.submitted) for step in steps]
    return sorted(found)


def read(path: Path) -> BatchRecord:
    """The record in `path`; DamagedRecord when it cannot be read or trusted."""
    try:
        if not path.is_file() or path.is_symlink():
            raise DamagedRecord("not a regular file")
        if path.stat().st_size > _MAX_RECORD_BYTES:
            raise DamagedRecord("too large")
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        if isinstance(exc, DamagedRecord):
            raise
        raise DamagedRecord(f"unreadable ({type(exc).__name__})") from exc
    return parse(data)


def parse(data: Any) -> BatchRecord:
    """A record from decoded JSON, every field checked."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise DamagedRecord("not a version 1 record")
    kind = _text(data, "kind")
    if kind not in KINDS:
        raise DamagedRecord(f"unknown kind {kind!r}")
    batch_id = _text(data, "batch_id")
    if not BATCH_ID.match(batch_id):
        raise DamagedRecord("batch_id has characters a batch id never has")
    submitted = _text(data, "submitted")
    try:
        datetime.fromisoformat(submitted)
    except ValueError as exc:
        raise DamagedRecord("submitted is not a time") from exc
    requests, steps = _requests(data.get("requests"))
    return BatchRecord(
        provider=_text(data, "provider"),
        kind=kind,
        base_url=_text(data, "base_url"),
        batch_id=batch_id,
        submitted=submitted,
        requests=requests,
        steps=steps,
    )


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > _TEXT_LIMIT:
        raise DamagedRecord(f"'{name}' is not a short text")
    return value


def _requests(value: Any) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    if not isinstance(value, dict) or not value:
        raise DamagedRecord("'requests' is not a non-empty object")
    requests: dict[str, str] = {}
    steps: dict[str, tuple[str, ...]] = {}
    for custom_id, entry in value.items():
        if not CUSTOM_ID.match(custom_id) or not isinstance(entry, dict):
            raise DamagedRecord("a request has an invalid custom_id or entry")
        digest, names = entry.get("sha256"), entry.get("steps", [])
        if not isinstance(digest, str) or not SHA256.match(digest):
            raise DamagedRecord(f"request {custom_id} has no valid sha256")
        if not isinstance(names, list) or not all(
            isinstance(name, str) and 0 < len(name) <= _TEXT_LIMIT for name in names
        ):
            raise DamagedRecord(f"request {custom_id} has invalid steps")
        requests[custom_id], steps[custom_id] = digest, tuple(names)
    return requests, steps

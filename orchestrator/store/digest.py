"""Digests: sha256 of bytes, files and streams, and canonical JSON for hashing values."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 20
_SHA256 = re.compile("[0-9a-f]{64}")


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal values give equal bytes. Values JSON
    lacks (a date from YAML) enter as ``"<type>:<text>"``."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=tagged
    ).encode()


def tagged(value: Any) -> str:
    """A value JSON lacks (a date) as ``"<type>:<text>"``, as keys hold it."""
    return f"{type(value).__name__}:{value}"


def is_digest(value: object) -> bool:
    """Whether `value` is a sha256 in lowercase hex (64 characters)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    with path.open("rb") as handle:
        return sha256_stream(handle)[0]


def sha256_stream(source: BinaryIO, copy_to: BinaryIO | None = None) -> tuple[str, int]:
    """Hex sha256 and size of the rest of `source`, read in chunks and, if `copy_to` is given,
    written to it as they are read."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return digest.hexdigest(), size

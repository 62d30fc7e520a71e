"""Checksummed state files: bytes cut short or flipped on disk are refused, never half-used.

A sealed file is still JSON, ``{"sha256":"<hex>","record":<record>}``, where the digest is
that of the record's exact bytes: checking it costs one sha256 over the file, no parsing.
"""

from __future__ import annotations

import hashlib

_PREFIX = b'{"sha256":"'
_MIDDLE = b'","record":'
_DIGEST_END = len(_PREFIX) + 64
_RECORD_START = _DIGEST_END + len(_MIDDLE)


def seal(record: bytes) -> bytes:
    """The bytes of a JSON record with its checksum."""
    return _PREFIX + hashlib.sha256(record).hexdigest().encode() + _MIDDLE + record + b"}"


def unseal(data: bytes) -> bytes | None:
    """The record `seal` wrapped, or None if the bytes are not sealed or fail their checksum."""
    if not data.startswith(_PREFIX) or data[_DIGEST_END:_RECORD_START] != _MIDDLE:
        return None
    if not data.endswith(b"}"):
        return None
    record = data[_RECORD_START:-1]
    if hashlib.sha256(record).hexdigest().encode() != data[len(_PREFIX) : _DIGEST_END]:
        return None
    return record

"""A shared remote cache: the local cache's objects and action records kept in an object store
(S3 and S3-compatible servers, GCS, Azure Blob, or a folder) through obstore.

    <url>/objects/ab/cdef…   an output's bytes, named by their sha256
    <url>/actions/<key>.json a step key → its outputs' sha256, as in the local cache

A local miss asks the remote. What comes back is untrusted: every object is checked against its
digest as it is streamed into the local cache, and a record is checked as a local one is (its
key, its digests, only paths the step declares). A record is written after its objects, so a
reader never finds a record whose objects are missing. The remote is configured by the
environment only (`ORCH_REMOTE_CACHE`, `ORCH_REMOTE_CACHE_MODE`); credentials and endpoints
come from each store's standard variables (for S3 the AWS ones, `AWS_ENDPOINT_URL` included).

Any failure of the remote (unreachable, refused, throttled, a body cut short) turns it off for
the rest of the build, which goes on with the local cache; `problem` says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from orchestrator.store.cache import RecordRefused, read_action
from orchestrator.store.filestore import DigestMismatch
from orchestrator.store.remotetally import Tally

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

    from orchestrator.store.cache import ActionResult, Cache

MODES = ("read-write", "read")
RETRIES: RetryConfig = {
    "max_retries": 2,
    "retry_timeout": timedelta(seconds=10),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=1)},
}
"""A remote that still fails after these is turned off for the build (obstore's own default
would retry for minutes)."""


class RemoteUnusable(Exception):
    """The remote failed in a way another request would not fix within this build."""


@dataclass(frozen=True)
class RemoteSettings:
    """Where the remote cache is, and whether this build may write to it."""

    url: str
    mode: str = "read-write"

    @property
    def writes(self) -> bool:
        return self.mode == "read-write"

    @classmethod
    def from_env(cls, env: Mapping[str, str], default: str | None = None) -> RemoteSettings | None:
        """`ORCH_REMOTE_CACHE` (a URL, else the pipeline's `default`) and
        `ORCH_REMOTE_CACHE_MODE`; None without a URL; ValueError for a mode that is not one of
        MODES."""
        url = env.get("ORCH_REMOTE_CACHE", "").strip() or (default or "").strip()
        if not url:
            return None
        mode = env.get("ORCH_REMOTE_CACHE_MODE", "").strip() or "read-write"
        if mode not in MODES:
            raise ValueError(
                f"ORCH_REMOTE_CACHE_MODE={mode!r}: expected {' or '.join(repr(m) for m in MODES)}"
            )
        return cls(url.rstrip("/"), mode)


@dataclass
class RemoteCache:
    """The remote behind one build's local cache."""

    settings: RemoteSettings
    cache: Cache
    env: Mapping[str, str]
    problem: str | None = None
    """Why the remote was turned off for this build, once it was."""
    tally: Tally = field(default_factory=Tally)
    """What this build asked the remote, got from it and sent it."""
    _store: Any = field(default=None, repr=False)

    def fetch(self, key: str, declares: Callable[[str], bool]) -> ActionResult | None:
        """The result of `key` from the remote, its objects checked and kept in the local
        cache; None on a miss, a record that cannot be trusted, or a remote turned off."""
        found = self._record(key, declares)
        if found is None:
            return None
        raw, action = found
        try:
            for digest in sorted(set(action.outputs.values())):
                if not self.cache.object_file(digest).is_file() and not self._receive(digest):
                    return None
        except RemoteUnusable as exc:
            self.problem = str(exc)
            return None
        try:
            adopted = self.cache.adopt(key, raw, declares)
        except RecordRefused:
            return None
        self.tally.add(hits=1)
        return adopted

    def peek(self, key: str, declares: Callable[[str], bool]) -> ActionResult | None:
        """The result the remote records for `key`, read but not downloaded (its objects are
        not fetched or checked): what `orch status --remote` predicts from."""
        found = self._record(key, declares)
        return None if found is None else found[1]

    def _record(
        self, key: str, declares: Callable[[str], bool]
    ) -> tuple[bytes, ActionResult] | None:
        """The remote's record of `key`, checked as a local one is; None when it is missing,
        refused, or the remote is (or just got) turned off."""
        if self.problem is not None:
            return None
        try:
            raw = self._get_bytes(f"actions/{key}.json")
        except RemoteUnusable as exc:
            self.problem = str(exc)
            return None
        self.tally.add(lookups=1)
        if raw is None:
            return None
        try:
            return raw, read_action(raw, key, declares)
        except RecordRefused:
            return None

    def _receive(self, digest: str) -> bool:
        """Stream the object `digest` into the local cache; False if the remote lacks it or its
        bytes do not match (nothing is kept then)."""
        chunks = self._get_stream(f"objects/{digest[:2]}/{digest[2:]}")
        if chunks is None:
            return False
        try:
            self.cache.receive(digest, _Checked(chunks, digest))
        except DigestMismatch:
            return False
        except RemoteUnusable:
            raise
        except OSError as exc:
            raise RemoteUnusable(f"cannot keep an object from the remote: {exc}") from exc
        return True

    def push(self, key: str) -> None:
        """Upload the objects of the local cache's result for `key`, then its record as it is
        (read-write mode only; nothing when the local cache has no usable record)."""
        if self.problem is not None or not self.settings.writes:
            return
        try:
            raw = self.cache.action_file(key).read_bytes()
            outputs = read_action(raw, key).outputs
        except (OSError, RecordRefused):
            return
        try:
            for digest in sorted(set(outputs.values())):
                name = f"objects/{digest[:2]}/{digest[2:]}"
                if not self._exists(name):
                    self._put(name, self.cache.object_file(digest))
            self._put(f"actions/{key}.json", raw)
        except RemoteUnusable as exc:
            self.problem = str(exc)
            return
        self.tally.add(uploads=1)

    # ------------------------------------------------------------------ the store

    def _connection(self) -> Any:
        if self._store is None:
            from obstore.store import from_url

            url = self.settings.url
            try:
                if url.startswith("file://"):
                    self._store = from_url(url, mkdir=True)
                else:
                    self._store = from_url(
                        url, client_options=_client_options(self.env), retry_config=RETRIES
                    )
            except Exception as exc:  # obstore raises its own kinds for a bad URL or config
                raise RemoteUnusable(f"cannot open {self.settings.url}: {_said(exc)}") from exc
        return self._store

    def _get_bytes(self, name: str) -> bytes | None:
        chunks = self._get_stream(name)
        return None if chunks is None else b"".join(bytes(chunk) for chunk in chunks)

    def _get_stream(self, name: str) -> Iterable[Any] | None:
        import obstore

        try:
            return _guarded(obstore.get(self._connection(), name).stream())
        except FileNotFoundError:
            return None
        except RemoteUnusable:
            raise
        except Exception as exc:
            raise RemoteUnusable(f"cannot read {name} from the remote: {_said(exc)}") from exc

    def _exists(self, name: str) -> bool:
        import obstore

        try:
            obstore.head(self._connection(), name)
        except FileNotFoundError:
            return False
        except RemoteUnusable:
            raise
        except Exception as exc:
            raise RemoteUnusable(f"cannot look up {name} on the remote: {_said(exc)}") from exc
        return True

    def _put(self, name: str, data: bytes | Path) -> None:
        import obstore

        try:
            obstore.put(self._connection(), name, data)
        except RemoteUnusable:
            raise
        except Exception as exc:
            raise RemoteUnusable(f"cannot write {name} to the remote: {_said(exc)}") from exc


def _guarded(chunks: Iterable[Any]) -> Iterable[Any]:
    """The chunks of a download; a failure while streaming is the remote's."""
    try:
        yield from chunks
    except Exception as exc:
        raise RemoteUnusable(f"a download from the remote broke off: {_said(exc)}") from exc


@dataclass(frozen=True)
class _Checked:
    """A `Fill` writing downloaded chunks while hashing them; DigestMismatch unless they have
    the sha256 `expect`."""

    chunks: Iterable[Any]
    expect: str

    def __call__(self, out: BinaryIO) -> None:
        digest = hashlib.sha256()
        for chunk in self.chunks:
            data = bytes(chunk)
            digest.update(data)
            out.write(data)
        if digest.hexdigest() != self.expect:
            raise DigestMismatch(5, "the remote's bytes do not match their digest", self.expect)


def _client_options(env: Mapping[str, str]) -> ClientConfig:
    """Plain HTTP only when the endpoint asks for it (a MinIO or a test server)."""
    endpoint = env.get("AWS_ENDPOINT_URL", "") or env.get("AWS_ENDPOINT", "")
    options: ClientConfig = {"timeout": "30s", "connect_timeout": "5s"}
    if endpoint.startswith("http://"):
        options["allow_http"] = True
    return options


def _said(exc: BaseException) -> str:
    """The first line of what an error says, short."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]

"""`--batch`: the first call of each llm step goes through the provider's batch API, at half
price.

A `Batcher` stands in for an HTTP provider. Calls arriving within `window_s` of each other
are submitted as one batch (each request body under a custom_id derived from its sha256); the
batch is recorded under `.orch/batches/` before it is waited on, polled every `poll_s` (growing
to six times `poll_s`), and each waiting call gets its request's outcome, parsed by the wire format
as a normal reply. A call whose body a record holds polls that batch again instead of
submitting. A step's follow-up calls (continue, repair) go out as normal calls, and so does
every call when the batch API refuses the submission (a 4xx). `Unbatched` notes, for a kind
without a batch API, that its calls go out normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import UsageError
from orchestrator.providers.base import Call, ChatRequest, ProviderClient, ProviderError, Reply
from orchestrator.providers.config import display_url
from orchestrator.store import batches
from orchestrator.store.batches import BatchRecord, DamagedRecord

if TYPE_CHECKING:
    from orchestrator.providers.batchapi import BatchApi, Outcome, State
    from orchestrator.providers.http import HttpProvider

MAX_POLL_FAILURES = 5
"""Polls in a row that may fail (connection, server) before the waiting calls fail."""
BACKOFF = 1.5
SLOWEST = 6
"""The poll interval grows to at most this times `poll_s`."""


@dataclass(frozen=True)
class BatchConfig:
    """How batches are gathered and polled."""

    folder: Path
    """Where records go (`.orch/batches/`)."""
    window_s: float = 0.5
    poll_s: float = 10.0

    @classmethod
    def from_env(cls, folder: Path, env: Mapping[str, str]) -> BatchConfig:
        """`ORCH_BATCH_WINDOW_S` and `ORCH_BATCH_POLL_S` over the defaults."""
        return cls(
            folder,
            _seconds(env, "ORCH_BATCH_WINDOW_S", cls.window_s),
            _seconds(env, "ORCH_BATCH_POLL_S", cls.poll_s),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{name}={text!r}: expected a number above 0")
    return value


def body_digest(body: Mapping[str, Any]) -> str:
    """The sha256 of a request body, keys sorted: what a record matches requests by."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def custom_id(digest: str) -> str:
    return f"orch-{digest[:48]}"


@dataclass
class _Item:
    """One request of a batch and the calls waiting on it (steps asking the same)."""

    digest: str
    body: dict[str, Any]
    calls: list[Call] = field(default_factory=list)
    waiters: list[asyncio.Future[Outcome | None]] = field(default_factory=list)

    def resolve(self, outcome: Outcome | None) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(outcome)


@dataclass
class _Active:
    """A batch being waited on: its record and the requests calls wait on."""

    record: BatchRecord
    items: dict[str, _Item]
    """digest → item."""


class Batcher:
    """An HTTP provider whose steps' first calls go through its batch API."""

    def __init__(self, http: HttpProvider, api: BatchApi, config: BatchConfig) -> None:
        self.name = http.name
        self.kind = http.kind
        self.http = http
        self.api = api
        self.config = config
        self.where = display_url(http.settings.base_url)
        self._asked: set[str] = set()
        self._pending: dict[str, _Item] = {}
        self._arrivals = 0
        self._collecting = False
        self._active: dict[str, _Active] = {}
        self._ended: dict[str, Outcome] = {}
        """digest → the outcome of a request of an ended batch no call waited on yet."""
        self._records: dict[str, BatchRecord] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def complete(self, request: ChatRequest, call: Call) -> Reply:
        """The reply to `request`: from a batch for a step's first call, else a normal call."""
        if call.step in self._asked:
            return await self.http.complete(request, call)
        self._asked.add(call.step)
        body = self.http.body(request)
        outcome = await self._outcome(body_digest(body), body, call)
        if outcome is None:
            return await self.http.complete(request, call)
        if isinstance(outcome, ProviderError):
            raise ProviderError(outcome.kind, outcome.message, retry=False)
        return outcome

    async def _outcome(self, digest: str, body: dict[str, Any], call: Call) -> Outcome | None:
        if digest in self._ended:
            return self._ended.pop(digest)
        waiter: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        item = self._waiting_item(digest) or self._recorded_item(digest, body, call)
        if item is None:
            item = self._pending.setdefault(digest, _Item(digest, body))
            self._arrivals += 1
            if not self._collecting:
                self._collecting = True
                self._start(self._collect())
        item.calls.append(call)
        item.waiters.append(waiter)
        return await waiter

    def _waiting_item(self, digest: str) -> _Item | None:
        """The item of a batch under way or about to be submitted that carries `digest`."""
        for active in self._active.values():
            if digest in active.items:
                return active.items[digest]
        return self._pending.get(digest)

    # ------------------------------------------------------------------ resuming

    def _recorded_item(self, digest: str, body: dict[str, Any], call: Call) -> _Item | None:
        """An item of a recorded batch carrying `digest`, polled again (not resubmitted)."""
        record = self._recorded(call).get(digest)
        if record is None:
            return None
        active = self._active.get(record.batch_id)
        if active is None:
            active = self._active[record.batch_id] = _Active(record, {})
            self._start(self._poll(active))
        call.emit(
            "llm.batch.resumed",
            provider=self.name,
            batch_id=record.batch_id,
            submitted=record.submitted,
        )
        item = active.items[digest] = _Item(digest, body)
        return item

    def _recorded(self, call: Call) -> dict[str, BatchRecord]:
        """digest → the latest record of this provider holding it, read once; a damaged
        record is reported, removed and left out."""
        if self._records is None:
            self._records = {}
            for path, found in batches.scan(self.config.folder):
                if isinstance(found, DamagedRecord):
                    self._ignore(path, found, call)
                elif self._ours(found):
                    for digest in found.requests.values():
                        known = self._records.get(digest)
                        if known is None or known.submitted < found.submitted:
                            self._records[digest] = found
        return self._records

    def _ours(self, record: BatchRecord) -> bool:
        return (record.provider, record.kind, record.base_url) == (
            self.name,
            self.kind,
            self.where,
        )

    def _ignore(self, path: Path, damaged: DamagedRecord, call: Call) -> None:
        call.emit(
            "llm.batch.ignored",
            "warning",
            provider=self.name,
            record=path.name,
            reason=str(damaged),
        )
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ submitting

    async def _collect(self) -> None:
        """Wait until no call arrived for `window_s`, then submit what arrived."""
        seen = -1
        while seen != self._arrivals:
            seen = self._arrivals
            await asyncio.sleep(self.config.window_s)
        items, self._pending, self._collecting = self._pending, {}, False
        await self._submit(items)

    async def _submit(self, items: dict[str, _Item]) -> None:
        bodies = {custom_id(digest): item.body for digest, item in items.items()}
        try:
            batch_id = await self.api.submit(self.http, bodies)
        except ProviderError as error:
            self._refused(items, error)
            return
        record = BatchRecord(
            provider=self.name,
            kind=self.kind,
            base_url=self.where,
            batch_id=batch_id,
            submitted=datetime.now(UTC).isoformat(timespec="seconds"),
            requests={custom_id(digest): digest for digest in items},
            steps={custom_id(d): tuple(c.step for c in item.calls) for d, item in items.items()},
        )
        await asyncio.to_thread(self._save, record)
        active = self._active[batch_id] = _Active(record, dict(items))
        for item in items.values():
            for call in item.calls:
                call.emit(
                    "llm.batch.submitted",
                    provider=self.name,
                    batch_id=batch_id,
                    requests=len(items),
                )
        await self._poll(active)

    def _save(self, record: BatchRecord) -> None:
        """Record the batch; without a record it is still waited on, just not resumable."""
        with contextlib.suppress(OSError):
            batches.write(self.config.folder, record)

    def _refused(self, items: Mapping[str, _Item], error: ProviderError) -> None:
        """The batch API refused (4xx): normal calls; any other failure fails the calls."""
        refused = error.kind in ("client", "rate_limit") and not error.retry
        for item in items.values():
            if refused:
                for call in item.calls:
                    call.emit(
                        "llm.batch.fallback",
                        "warning",
                        provider=self.name,
                        reason="refused",
                        message=f"the batch API refused the batch ({error.message});"
                        " calling normally",
                    )
            item.resolve(None if refused else error)

    # ------------------------------------------------------------------ waiting

    async def _poll(self, active: _Active) -> None:
        """Poll until the batch ends, then hand each request its outcome."""
        batch_id = active.record.batch_id
        delay, failures = self.config.poll_s, 0
        while True:
            try:
                state = await self.api.state(self.http, batch_id)
            except ProviderError as error:
                failures += 1
                if not error.retry or failures >= MAX_POLL_FAILURES:
                    self._end(active, {}, error)
                    if not error.retry:  # the API does not know the batch: never poll it again
                        self._forget(active.record)
                    return
            else:
                failures = 0
                if state.ended:
                    break
            await asyncio.sleep(delay)
            delay = min(delay * BACKOFF, self.config.poll_s * SLOWEST)
        await self._read(active, state)

    async def _read(self, active: _Active, state: State) -> None:
        try:
            outcomes = await self.api.results(self.http, active.record.batch_id, state)
        except ProviderError as error:
            self._end(active, {}, error)
            return
        self._end(active, outcomes, state.missing(), state.status)
        self._forget(active.record)

    def _forget(self, record: BatchRecord) -> None:
        """Remove the batch's record, on the loop: in a thread, the removal could still be
        queued when the build ends and `aclose` cancels the poll, leaving a record of a batch
        whose outcomes the build already handed out."""
        batches.remove(self.config.folder, record)

    def _end(
        self,
        active: _Active,
        outcomes: Mapping[str, Outcome],
        missing: ProviderError,
        status: str | None = None,
    ) -> None:
        """Hand out the outcomes; those no call waits on yet are kept for later calls."""
        record = active.record
        self._active.pop(record.batch_id, None)
        found = {digest: outcomes.get(cid) or missing for cid, digest in record.requests.items()}
        if status is not None:
            failed = sum(isinstance(outcome, ProviderError) for outcome in found.values())
            for item in active.items.values():
                for call in item.calls:
                    call.emit(
                        "llm.batch.ended",
                        provider=self.name,
                        batch_id=record.batch_id,
                        status=status,
                        succeeded=len(found) - failed,
                        failed=failed,
                    )
        for digest, outcome in found.items():
            waiting = active.items.get(digest)
            if waiting is None:
                self._ended[digest] = outcome
            else:
                waiting.resolve(outcome)
        if self._records is not None:
            for digest in record.requests.values():
                self._records.pop(digest, None)

    def _start(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop polling: a build that ends or is cancelled leaves its records for the next."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Unbatched:
    """A provider of a kind without a batch API under `--batch`: calls go out normally, and
    each step's first one says so."""

    def __init__(self, client: ProviderClient) -> None:
        self.name = client.name
        self.kind = client.kind
        self.client = client
        self._noted: set[str] = set()

    async def complete(self, request: ChatRequest, call: Call) -> Reply:
        if call.step not in self._noted:
            self._noted.add(call.step)
            call.emit(
                "llm.batch.fallback",
                provider=self.name,
                reason="unsupported",
                message=f"{self.kind} has no batch API; calling normally",
            )
        return await self.client.complete(request, call)

"""The pure scheduler: which steps may be assessed and run now, and what a step's end means.

`Schedule` knows step ids, the steps each waits for, the job limit and the failure policy; it does
no I/O. A step whose predecessors all succeeded becomes ready (ties in plan order). The runner
takes it, assesses it, and either finishes it at once (up to date, restored) or queues it to run;
`start` hands out queued steps while fewer than `jobs` run. A failure blocks every step after it
and, without `keep_going`, stops new starts while running steps finish; so does `cancel`. Steps
that never start stay pending.
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable, Mapping, Sequence

from orchestrator.record.status import SUCCESSES, Status

ENDINGS = SUCCESSES | {Status.FAILED, Status.CANCELLED, Status.DEFERRED}
"""How a taken step may end."""


class Schedule:
    """The bookkeeping of one build over `steps` (in plan order), free of any effect."""

    def __init__(
        self,
        steps: Sequence[str],
        preds: Mapping[str, Iterable[str]],
        jobs: int = 1,
        keep_going: bool = False,
        free: Container[str] = frozenset(),
    ) -> None:
        self.jobs = jobs
        self.free = free
        """Steps that take no job slot: llm steps under `--batch`, which wait on the
        provider's batch rather than work here."""
        self.keep_going = keep_going
        self.stopping = False
        self.status = {step_id: Status.PENDING for step_id in steps}
        self.running: set[str] = set()
        self._position = {step_id: i for i, step_id in enumerate(steps)}
        self._waiting = {s: {p for p in preds.get(s, ()) if p in self._position} for s in steps}
        self._children: dict[str, list[str]] = {s: [] for s in steps}
        for step_id, waits_for in self._waiting.items():
            for pred in waits_for:
                self._children[pred].append(step_id)
        self._ready = [(self._position[s], s) for s in steps if not self._waiting[s]]
        heapq.heapify(self._ready)
        self._queued: list[tuple[int, str]] = []
        self._queued_free: list[tuple[int, str]] = []
        self.held: set[str] = set()
        """Steps deferred to a later round, and every step after them."""

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._position

    def dependents(self, step_id: str) -> list[str]:
        """The steps that wait for `step_id`."""
        return self._children[step_id]

    @property
    def has_ready(self) -> bool:
        """Whether a step waits to be assessed (stopped or not)."""
        return bool(self._ready)

    @property
    def ready_comes_first(self) -> bool:
        """Whether a step waits to be assessed that comes before every queued step in plan
        order (or none is queued): it may have to start before them."""
        if not self._ready:
            return False
        return not self._queued or self._ready[0][0] < self._queued[0][0]

    @property
    def has_queued(self) -> bool:
        """Whether an assessed step waits for a job slot."""
        return bool(self._queued or self._queued_free)

    @property
    def done(self) -> bool:
        """Whether nothing runs and nothing more will start."""
        return not self.running and (self.stopping or not (self._ready or self.has_queued))

    def take_ready(self) -> str | None:
        """The next step to assess, in plan order; None when none is ready or the build stops."""
        if self.stopping or not self._ready:
            return None
        return heapq.heappop(self._ready)[1]

    def queue(self, step_id: str) -> None:
        """An assessed step has to run: it waits for a job slot (unless it takes none)."""
        queue = self._queued_free if step_id in self.free else self._queued
        heapq.heappush(queue, (self._position[step_id], step_id))

    def start(self) -> list[str]:
        """The queued steps to start now, in plan order: those that take no slot, and the
        others within the job limit."""
        started: list[str] = []
        while self._queued_free and not self.stopping:
            started.append(heapq.heappop(self._queued_free)[1])
        busy = sum(step_id not in self.free for step_id in self.running)
        while self._queued and busy < self.jobs and not self.stopping:
            started.append(heapq.heappop(self._queued)[1])
            busy += 1
        self.running.update(started)
        return sorted(started, key=self._position.__getitem__)

    def finish(self, step_id: str, status: Status) -> list[str]:
        """Record how a taken step ended; the steps a failure blocks, in the order blocked."""
        if self.status[step_id] != Status.PENDING or status not in ENDINGS:
            raise ValueError(f"step '{step_id}' cannot end {status}: it is {self.status[step_id]}")
        self.running.discard(step_id)
        self.status[step_id] = status
        if status in SUCCESSES:
            self._release(step_id)
        elif status == Status.FAILED:
            self.stopping = self.stopping or not self.keep_going
            return self._block_after(step_id)
        elif status == Status.DEFERRED:
            self._hold_after(step_id)
        return []

    def cancel(self) -> None:
        """Start nothing more; the running steps still get finished."""
        self.stopping = True

    def succeeded(self) -> bool:
        """Whether every step succeeded (ran, restored or was up to date), or waits for a
        later round."""
        return all(
            status in SUCCESSES or step_id in self.held for step_id, status in self.status.items()
        )

    def _release(self, step_id: str) -> None:
        for child in self._children[step_id]:
            waiting = self._waiting[child]
            waiting.discard(step_id)
            if not waiting and self.status[child] == Status.PENDING:
                heapq.heappush(self._ready, (self._position[child], child))

    def _hold_after(self, deferred: str) -> None:
        """A deferred step's dependents stay pending, for the next round."""
        stack = [deferred]
        while stack:
            step_id = stack.pop()
            if step_id not in self.held:
                self.held.add(step_id)
                stack.extend(self._children[step_id])

    def _block_after(self, failed: str) -> list[str]:
        blocked: list[str] = []
        stack = list(self._children[failed])
        while stack:
            step_id = stack.pop()
            if self.status[step_id] != Status.PENDING:
                continue
            self.status[step_id] = Status.BLOCKED
            blocked.append(step_id)
            stack.extend(self._children[step_id])
        return blocked

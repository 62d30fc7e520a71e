"""When each step of a run happened, on which worker lane, and the run's critical path.

Everything is read from the events: a step that ran spans `step.started` to `step.succeeded` or
`step.failed`; a step restored, up to date or blocked is an instant (its `step.restored` or
`step.skipped`). Lanes are assigned greedily: each step, in order of start, takes the first lane
free by then.

The critical path ends at the step that finished last (of those that did not wait on a
failure: a blocked step did nothing) and goes back, step by step, to the
predecessor that finished last. With the step graph (`preds`: each step's predecessors, from the
saved plan, see `orchestrator/plan/saved.py`), a predecessor is a step it depends on; without it,
a predecessor is any step that finished before it started, so the path is the chain of waits
the run shows, which may cross steps that are not linked.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.record.events import Event

SPANS = {"step.started": "start", "step.succeeded": "end", "step.failed": "end"}
INSTANTS = frozenset({"step.restored", "step.skipped"})
BLOCKED = "blocked"
"""The reason of a `step.skipped` whose step waited on a failure."""


@dataclass(frozen=True)
class Bar:
    """One step on the timeline; times in seconds after the job started."""

    step: str
    start: float
    end: float
    lane: int = 0
    critical: bool = False


@dataclass(frozen=True)
class Timeline:
    """The bars of a run, how many lanes they take, how long the run was, and its critical path
    (step ids, first to last)."""

    bars: list[Bar]
    lanes: int
    span: float
    critical: list[str]


def seconds(ts: object) -> float | None:
    """An event's ISO-8601 time as seconds since the epoch; None when it is not one."""
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return None


def intervals(events: Iterable[Event]) -> tuple[dict[str, tuple[float, float]], float]:
    """Each step's (start, end) after the job's start, and the run's length so far.

    A step still running when the events stop ends with the last event."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    origin: float | None = None
    last = 0.0
    for event in events:
        at = seconds(event.get("ts"))
        if at is None:
            continue
        origin = at if origin is None else origin
        last = max(last, at - origin)
        step, kind = event.get("step"), event.get("type", "")
        if not isinstance(step, str):
            continue
        if SPANS.get(kind) == "start" or kind in INSTANTS:
            starts.setdefault(step, at - origin)
        if SPANS.get(kind) == "end" or kind in INSTANTS:
            ends[step] = at - origin
    found = {step: (start, ends.get(step, last)) for step, start in starts.items()}
    return found, last


def lanes(spans: Mapping[str, tuple[float, float]]) -> dict[str, int]:
    """Each step's lane: in order of start, the first lane whose last step ended by then."""
    lane_ends: list[float] = []
    chosen: dict[str, int] = {}
    for step, (start, end) in sorted(spans.items(), key=lambda item: item[1]):
        free = next((i for i, busy in enumerate(lane_ends) if busy <= start), len(lane_ends))
        if free == len(lane_ends):
            lane_ends.append(end)
        lane_ends[free] = end
        chosen[step] = free
    return chosen


def critical_path(
    spans: Mapping[str, tuple[float, float]], preds: Mapping[str, Sequence[str]] | None
) -> list[str]:
    """From the step that finished last back to the first, the predecessor that finished last
    each time (see the module's docstring for what a predecessor is without `preds`)."""
    if not spans:
        return []
    before = _linked(spans, preds) if preds is not None else _waited_on(spans)
    step: str | None = max(spans, key=lambda s: (spans[s][1], spans[s][1] - spans[s][0]))
    path: dict[str, None] = {}  # ordered, and quick to test
    while step is not None and step not in path:
        path[step] = None
        step = before(step, path)
    return list(path)[::-1]


Predecessor = Callable[[str, Container[str]], str | None]
"""The predecessor of a step that finished last, given the steps on the path so far."""


def _linked(
    spans: Mapping[str, tuple[float, float]], preds: Mapping[str, Sequence[str]]
) -> Predecessor:
    def before(step: str, path: Container[str]) -> str | None:
        linked = [p for p in preds.get(step, ()) if p in spans]
        return max(linked, key=lambda p: spans[p][1], default=None)

    return before


def _waited_on(spans: Mapping[str, tuple[float, float]]) -> Predecessor:
    by_end = sorted(spans, key=lambda s: spans[s][1])
    ends = [spans[s][1] for s in by_end]

    def before(step: str, path: Container[str]) -> str | None:
        at = bisect.bisect_right(ends, spans[step][0])
        return next((by_end[i] for i in range(at - 1, -1, -1) if by_end[i] not in path), None)

    return before


def _blocked(event: Event) -> bool:
    reason = (event.get("data") or {}).get("reason")
    return event.get("type") == "step.skipped" and reason == BLOCKED


def timeline(events: Iterable[Event], preds: Mapping[str, Sequence[str]] | None) -> Timeline:
    """The timeline of a run from its events, with the step graph when it is known."""
    events = list(events)
    spans, span = intervals(events)
    lane_of = lanes(spans)
    blocked = {e.get("step") for e in events if _blocked(e)}
    critical = critical_path({s: t for s, t in spans.items() if s not in blocked}, preds)
    on_path = set(critical)
    bars = [
        Bar(step, start, end, lane_of[step], step in on_path)
        for step, (start, end) in spans.items()
    ]
    return Timeline(bars, max(lane_of.values(), default=-1) + 1, span, critical)

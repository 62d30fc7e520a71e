"""The pure scheduler on toy graphs with a fake executor: no files, processes or event loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.scheduler import Schedule
from orchestrator.record.status import SUCCESSES, Status

UP, RESTORED, RAN, FAILED = Status.UP_TO_DATE, Status.RESTORED, Status.RAN, Status.FAILED
Graph = Mapping[str, Sequence[str]]


@dataclass
class Trace:
    """What a fake build did, in order: ("take" | "start" | "finish" | "cancel", step id)."""

    schedule: Schedule
    events: list[tuple[str, str]] = field(default_factory=list)

    def of(self, what: str) -> list[str]:
        return [step_id for kind, step_id in self.events if kind == what]

    @property
    def status(self) -> dict[str, Status]:
        return self.schedule.status


def drive(
    graph: Graph,
    outcomes: Mapping[str, Status] | None = None,
    jobs: int = 1,
    keep_going: bool = False,
    pick: Callable[[list[str]], int] = lambda running: 0,
    cancel_after: int | None = None,
) -> Trace:
    """Build `graph` as the runner does: up-to-date and restored steps end when assessed, the
    others run and end as `outcomes` says (ran by default); `pick` chooses which running step
    ends next, `cancel_after` cancels once that many steps ran."""
    outcomes = outcomes or {}
    trace = Trace(Schedule(list(graph), graph, jobs, keep_going))
    schedule, running = trace.schedule, []
    while True:
        while (step_id := schedule.take_ready()) is not None:
            trace.events.append(("take", step_id))
            outcome = outcomes.get(step_id, RAN)
            if outcome in (UP, RESTORED):
                trace.events.append(("finish", step_id))
                schedule.finish(step_id, outcome)
            else:
                schedule.queue(step_id)
        for step_id in schedule.start():
            trace.events.append(("start", step_id))
            running.append(step_id)
            assert len(schedule.running) <= jobs
        if schedule.done:
            return trace
        step_id = running.pop(pick(running))
        if cancel_after is not None and len(trace.of("finish")) >= cancel_after:
            if not trace.of("cancel"):
                trace.events.append(("cancel", ""))
            schedule.cancel()
        cancelled = bool(trace.of("cancel"))
        trace.events.append(("finish", step_id))
        schedule.finish(step_id, Status.CANCELLED if cancelled else outcomes.get(step_id, RAN))


CHAIN = {"a": [], "b": ["a"], "c": ["b"]}
FAN = {"root": [], "x": ["root"], "y": ["root"], "z": ["root"], "join": ["x", "y", "z"]}
DIAMOND = {"top": [], "left": ["top"], "right": ["top"], "bottom": ["left", "right"]}
TWO_BRANCHES = {"a1": [], "b1": [], "a2": ["a1"], "b2": ["b1"], "a3": ["a2"], "b3": ["b2"]}


def test_a_chain_runs_in_order() -> None:
    trace = drive(CHAIN, jobs=4)
    assert trace.of("start") == ["a", "b", "c"]
    assert trace.status == {"a": RAN, "b": RAN, "c": RAN}
    assert trace.schedule.succeeded()


def test_one_job_assesses_the_ready_steps_then_runs_them_one_at_a_time_in_plan_order() -> None:
    trace = drive(FAN, jobs=1)
    assert trace.events == [
        *[("take", "root"), ("start", "root"), ("finish", "root")],
        *[("take", "x"), ("take", "y"), ("take", "z")],
        *[("start", "x"), ("finish", "x"), ("start", "y"), ("finish", "y")],
        *[("start", "z"), ("finish", "z")],
        *[("take", "join"), ("start", "join"), ("finish", "join")],
    ]


def test_many_jobs_run_the_fan_out_together_and_the_join_after_all() -> None:
    trace = drive(FAN, jobs=3)
    assert trace.events[3:9] == [
        ("take", "x"),
        ("take", "y"),
        ("take", "z"),
        ("start", "x"),
        ("start", "y"),
        ("start", "z"),
    ]
    assert trace.of("start")[-1] == "join"
    assert trace.events.index(("take", "join")) > trace.events.index(("finish", "z"))


def test_the_job_limit_holds_back_the_rest_in_plan_order() -> None:
    trace = drive(FAN, jobs=2, pick=lambda running: len(running) - 1)
    assert trace.of("start") == ["root", "x", "y", "z", "join"]
    assert trace.of("finish") == ["root", "y", "z", "x", "join"]


def test_a_ready_step_comes_first_only_while_it_precedes_every_queued_one() -> None:
    """The runner assesses ready steps until the next one comes after a queued step: what
    it then starts is what it would start had it assessed every ready step first."""
    schedule = Schedule(["a", "b", "c"], {})
    seen = [schedule.ready_comes_first]  # nothing queued yet
    schedule.queue(schedule.take_ready() or "")
    seen.append(schedule.ready_comes_first)  # b comes after the queued a
    assert schedule.start() == ["a"]
    seen.append(schedule.ready_comes_first)
    assert schedule.take_ready() == "b"
    schedule.finish("b", Status.UP_TO_DATE)
    assert schedule.take_ready() == "c"
    seen.append(schedule.ready_comes_first)  # none left to assess
    assert seen == [True, False, True, False]


def test_a_diamond_waits_for_both_sides_once() -> None:
    trace = drive(DIAMOND, jobs=2)
    assert trace.of("take").count("bottom") == 1
    assert trace.events.index(("take", "bottom")) > trace.events.index(("finish", "right"))
    assert trace.schedule.succeeded()


def test_steps_after_restored_or_up_to_date_ones_are_ready_at_once() -> None:
    trace = drive(CHAIN, {"a": UP, "b": RESTORED})
    assert trace.events == [
        ("take", "a"),
        ("finish", "a"),
        ("take", "b"),
        ("finish", "b"),
        ("take", "c"),
        ("start", "c"),
        ("finish", "c"),
    ]
    assert trace.status == {"a": UP, "b": RESTORED, "c": RAN}


def test_a_failure_blocks_exactly_its_descendants() -> None:
    schedule = Schedule(list(DIAMOND), DIAMOND, jobs=2, keep_going=True)
    assert schedule.take_ready() == "top"
    assert schedule.finish("top", UP) == []
    assert [schedule.take_ready(), schedule.take_ready()] == ["left", "right"]
    schedule.queue("left")
    schedule.queue("right")
    assert schedule.start() == ["left", "right"]
    assert schedule.finish("left", FAILED) == ["bottom"]
    assert schedule.finish("right", RAN) == []
    assert schedule.take_ready() is None
    assert schedule.done
    assert schedule.status == {"top": UP, "left": FAILED, "right": RAN, "bottom": Status.BLOCKED}
    assert not schedule.succeeded()


def test_blocked_steps_come_in_depth_first_order() -> None:
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b"], "e": ["c", "d"]}
    schedule = Schedule(list(graph), graph)
    assert schedule.take_ready() == "a"
    assert schedule.finish("a", FAILED) == ["c", "e", "b", "d"]


def test_without_keep_going_a_failure_starts_nothing_new_while_running_steps_finish() -> None:
    trace = drive(TWO_BRANCHES, {"a1": FAILED}, jobs=2)
    assert trace.of("start") == ["a1", "b1"]
    assert trace.of("finish") == ["a1", "b1"]
    assert trace.status == {
        "a1": FAILED,
        "b1": RAN,
        "a2": Status.BLOCKED,
        "b2": Status.PENDING,
        "a3": Status.BLOCKED,
        "b3": Status.PENDING,
    }


def test_keep_going_runs_the_independent_branch() -> None:
    trace = drive(TWO_BRANCHES, {"a1": FAILED}, jobs=1, keep_going=True)
    assert trace.of("start") == ["a1", "b1", "b2", "b3"]
    assert trace.status["a3"] == Status.BLOCKED
    assert trace.status["b3"] == RAN


def test_cancelling_starts_nothing_new_and_leaves_the_rest_pending() -> None:
    trace = drive(TWO_BRANCHES, jobs=2, cancel_after=0)
    assert trace.of("start") == ["a1", "b1"]
    assert trace.status == {
        "a1": Status.CANCELLED,
        "b1": Status.CANCELLED,
        "a2": Status.PENDING,
        "b2": Status.PENDING,
        "a3": Status.PENDING,
        "b3": Status.PENDING,
    }
    assert trace.schedule.done and not trace.schedule.succeeded()


def test_a_step_that_already_ended_cannot_end_again() -> None:
    schedule = Schedule(["a"], {})
    schedule.finish("a", RAN)
    with pytest.raises(ValueError, match="cannot end"):
        schedule.finish("a", FAILED)
    with pytest.raises(ValueError, match="cannot end"):
        Schedule(["b"], {}).finish("b", Status.BLOCKED)


def test_predecessors_outside_the_selection_are_ignored() -> None:
    schedule = Schedule(["b"], {"b": ["a"]})
    assert "b" in schedule and "a" not in schedule
    assert schedule.take_ready() == "b"
    assert schedule.dependents("b") == []


def test_the_statuses_are_the_strings_manifests_and_events_use() -> None:
    assert [str(s) for s in Status] == [
        "pending",
        "up-to-date",
        "restored",
        "ran",
        "failed",
        "blocked",
        "cancelled",
        "running",
        "deferred",
    ]


def test_a_deferred_step_holds_what_comes_after_it_for_the_next_round() -> None:
    schedule = Schedule(["a", "b", "c", "d"], {"b": ["a"], "c": ["b"], "d": ["a"]}, jobs=2)
    assert schedule.take_ready() == "a"
    schedule.finish("a", Status.RAN)
    assert schedule.take_ready() == "b"
    assert schedule.finish("b", Status.DEFERRED) == []  # nothing is blocked
    assert schedule.take_ready() == "d"
    schedule.finish("d", Status.UP_TO_DATE)
    assert schedule.take_ready() is None and schedule.done
    assert schedule.held == {"b", "c"}
    assert schedule.status["c"] == Status.PENDING
    assert schedule.succeeded(), "what waits for the next round is not a failure"


# ---------------------------------------------------------------------------- random graphs


@st.composite
def builds(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, Status], int, bool]:
    size = draw(st.integers(1, 9))
    names = [f"s{i}" for i in range(size)]
    graph = {
        name: draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        for i, name in enumerate(names)
    }
    outcomes = {name: draw(st.sampled_from([UP, RESTORED, RAN, FAILED])) for name in names}
    return graph, outcomes, draw(st.integers(1, 4)), draw(st.booleans())


def _ancestors(graph: Graph, step_id: str) -> set[str]:
    found: set[str] = set()
    stack = list(graph[step_id])
    while stack:
        pred = stack.pop()
        if pred not in found:
            found.add(pred)
            stack.extend(graph[pred])
    return found


@settings(max_examples=150, deadline=None)
@given(builds(), st.data())
def test_random_builds_keep_the_rules(
    build: tuple[dict[str, list[str]], dict[str, Status], int, bool], data: st.DataObject
) -> None:
    graph, outcomes, jobs, keep_going = build
    cancel_after = data.draw(st.none() | st.integers(0, 9))

    def pick(running: list[str]) -> int:
        return data.draw(st.integers(0, len(running) - 1))

    trace = drive(graph, outcomes, jobs, keep_going, pick, cancel_after)
    ended: dict[str, Status] = {}
    cancelled = False
    for kind, step_id in trace.events:
        if kind in ("take", "start"):
            assert all(ended.get(p) in SUCCESSES for p in graph[step_id]), step_id
            assert not cancelled and (keep_going or FAILED not in ended.values())
        elif kind == "finish":
            assert step_id not in ended
            ended[step_id] = trace.status[step_id]
        cancelled = cancelled or kind == "cancel"
    settled = {
        s for s, status in trace.status.items() if status not in (Status.PENDING, Status.BLOCKED)
    }
    assert ended.keys() == settled
    failed = {s for s, status in trace.status.items() if status == FAILED}
    stopped = cancelled or (bool(failed) and not keep_going)
    for step_id, status in trace.status.items():
        if status == Status.PENDING:
            assert stopped
        else:
            assert (status == Status.BLOCKED) == bool(_ancestors(graph, step_id) & failed)
    assert trace.schedule.done
    assert trace.schedule.succeeded() == (not stopped and not failed)


def test_steps_that_take_no_slot_start_beside_the_job_limit() -> None:
    steps = ["a", "b", "c", "d"]
    schedule = Schedule(steps, {}, jobs=1, free={"b", "c"})
    while (step := schedule.take_ready()) is not None:
        schedule.queue(step)
    assert schedule.start() == ["a", "b", "c"], "b and c wait on a batch, not on a slot"
    schedule.finish("b", Status.RAN)
    assert schedule.start() == [], "d still waits for a's slot"
    schedule.finish("a", Status.RAN)
    assert schedule.start() == ["d"]

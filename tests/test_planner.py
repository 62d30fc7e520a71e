"""decide(): the action and its reasons, in the documented order, for toy lock entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict, Unpack

import pytest

from orchestrator.engine.decide import Action, Current, Decision, Options, decide
from orchestrator.record.status import Why
from orchestrator.store.lockfile import LockEntry

H1, H2, H3, KEY, DEF = "1" * 64, "2" * 64, "3" * 64, "k" * 64, "d" * 64
ENTRY = LockEntry(key=KEY, definition=DEF, inputs={"a.txt": H1, "b.txt": H2}, outputs={"o.txt": H3})
SAME = Current(KEY, DEF, {"a.txt": H1, "b.txt": H2}, {"o.txt": H3})


class Changes(TypedDict, total=False):
    """The fields of `Current` a test may change."""

    key: str
    definition: str
    inputs: Mapping[str, str | None]
    outputs: Mapping[str, str | None]
    cached: bool
    upstream_will_change: bool
    upstream_failed: bool


def now(**changes: Unpack[Changes]) -> Current:
    return SAME._replace(**changes)


def test_unchanged_step_is_up_to_date_with_no_reasons() -> None:
    assert decide(ENTRY, SAME) == Decision(Action.UP_TO_DATE)


@pytest.mark.parametrize(
    ("current", "reasons"),
    [
        (now(key="x" * 64, definition="e" * 64), ("definition changed",)),
        (
            now(key="x" * 64, inputs={"a.txt": H1, "b.txt": H2, "c.txt": H3}),
            ("input added: c.txt",),
        ),
        (now(key="x" * 64, inputs={"a.txt": H1}), ("input removed: b.txt",)),
        (now(key="x" * 64, inputs={"a.txt": H1, "b.txt": None}), ("input removed: b.txt",)),
        (now(key="x" * 64, inputs={"a.txt": H3, "b.txt": H2}), ("input modified: a.txt",)),
        (now(outputs={"o.txt": None}), ("output missing: o.txt",)),
        (now(outputs={"o.txt": H1}), ("output modified: o.txt",)),
        (now(upstream_will_change=True), ("upstream will change",)),
    ],
)
def test_each_change_is_named(current: Current, reasons: tuple[str, ...]) -> None:
    assert decide(ENTRY, current) == (Action.RUN, reasons)


def test_reasons_come_in_the_documented_order() -> None:
    current = now(
        key="x" * 64,
        definition="e" * 64,
        inputs={"a.txt": H3, "z.txt": H1},
        outputs={"o.txt": None},
        upstream_will_change=True,
    )
    assert decide(ENTRY, current).reasons == (
        "definition changed",
        "input added: z.txt",
        "input removed: b.txt",
        "input modified: a.txt",
        "output missing: o.txt",
        "upstream will change",
    )


def test_each_reason_keeps_its_code_and_subject() -> None:
    current = now(key="x" * 64, inputs={"a.txt": H3, "b.txt": H2}, outputs={"o.txt": None})
    reasons = decide(ENTRY, current).reasons
    assert [(r.code, r.subject) for r in reasons] == [
        (Why.INPUT_MODIFIED, "a.txt"),
        (Why.OUTPUT_MISSING, "o.txt"),
    ]
    older = decide(ENTRY._replace(version=1), SAME).reasons
    assert [(r.code, r.subject) for r in older] == [(Why.OLDER_LOCK, "1")]
    assert older[0] == "recorded by an older orch (lock version 1, keys of another format)"


def test_never_built_runs_or_restores_when_the_cache_has_the_key() -> None:
    assert decide(None, SAME) == (Action.RUN, ("never built",))
    assert decide(None, now(cached=True)) == (Action.RESTORE, ("never built",))


def test_cache_is_not_used_when_forced_disabled_always_run_or_upstream_pending() -> None:
    cached = now(cached=True, outputs={"o.txt": None})
    assert decide(ENTRY, cached).action is Action.RESTORE
    assert decide(ENTRY, cached, Options(use_cache=False)).action is Action.RUN
    assert decide(ENTRY, cached, Options(force=True)).reasons[0] == "forced (--force)"
    assert decide(ENTRY, cached, Options(force=True)).action is Action.RUN
    assert decide(ENTRY, now(cached=True), Options(always_run=True)) == (
        Action.RUN,
        ("always_run",),
    )
    pending = now(cached=True, upstream_will_change=True)
    assert decide(ENTRY, pending).action is Action.RUN


def test_a_failed_upstream_blocks_the_step() -> None:
    assert decide(ENTRY, now(upstream_failed=True)) == (
        Action.BLOCKED,
        ("an upstream step failed",),
    )

"""Soak: many random truncations and bit flips of the lock, saved plans, the stat cache, cache
records and objects, and run events and manifests.

Every build after a corruption is refused with exit 2 naming the file, or leaves exactly the
outputs and lock of a clean build; the history commands end with a message, never a traceback.
`ORCH_SOAK_CORRUPTIONS` sets the number of trials per file kind (50 by default; use 500 or more
locally), `ORCH_SOAK_SEED` the seed.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable

import pytest

from tests.buildkit import Project
from tests.corruption import (
    Clean,
    cache_trial,
    history_trial,
    lock_trial,
    plan_trial,
    set_up,
    stat_cache_trial,
)

COUNT = int(os.environ.get("ORCH_SOAK_CORRUPTIONS", "50"))
SEED = int(os.environ.get("ORCH_SOAK_SEED", "0"))
Trial = Callable[[Project, Clean, random.Random], str]


@pytest.mark.slow
@pytest.mark.parametrize(
    "trial",
    [lock_trial, plan_trial, stat_cache_trial, cache_trial, history_trial],
    ids=["lock", "plan", "stat-cache", "cache", "history"],
)
def test_a_damaged_state_file_is_refused_or_rebuilt_as_clean(
    project: Project, trial: Trial
) -> None:
    clean = set_up(project)
    verdicts: Counter[str] = Counter()
    for number in range(COUNT):
        rng = random.Random(f"{SEED}-{trial.__name__}-{number}")
        try:
            verdicts[trial(project, clean, rng)] += 1
        except AssertionError as exc:
            raise AssertionError(f"trial {number} (seed {SEED}): {exc}") from exc
    print(f"{trial.__name__}: {COUNT} corruptions, {dict(verdicts)}")
    assert sum(verdicts.values()) == COUNT

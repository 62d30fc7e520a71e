"""Keeping Python's cyclic garbage collector off what a build loads once and keeps.

A build of many steps (or `orch status`, which looks at one) reads its plan, lock entries and
stat cache into hundreds of thousands of objects that live until it ends. Collections while
they are made find no garbage but walk more and more objects each time, and every full
collection afterwards walks them all again. So the collector pauses while they load, and they
are then frozen (`gc.freeze`) out of its sight until the build ends; reference counting still
frees whatever is dropped. A pipeline compiled afresh is the exception: its graphs are cycles
(networkx keeps its views on the graph), dropped once the plan is made, so they are collected
before the freeze rather than kept for the whole build. That collection looks at the youngest
generation only: with the collector paused, it holds exactly what was made since, so the
objects that lived before the build (in `orch watch` or a test process, many) are not walked.

The collector stays paused while the build assesses its steps, which makes one record and one
event per step and no cycles: with it running, its full collections walked every event held so
far, again and again. It runs again (`resume`) once a step is about to run: an event loop,
processes and providers' replies do make cycles.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator

_resume_to = False
"""Whether the collector ran before the build under way paused it (what `resume` restores)."""


@contextlib.contextmanager
def kept_for_the_build() -> Iterator[Callable[[bool], None]]:
    """Pause the cyclic collector for the build; the `settle` it gives freezes what exists
    then (after collecting the cyclic garbage when told that the load left some). On leaving,
    the frozen objects are handed back to the collector (a watch builds again and again in one
    process) and it runs again if it ran before."""
    global _resume_to
    enabled = _resume_to = gc.isenabled()
    gc.disable()

    def settle(collect: bool) -> None:
        if collect:  # the youngest generation: what was made since the collector paused
            gc.collect(0)
        gc.freeze()

    try:
        yield settle
    finally:
        _resume_to = False
        gc.unfreeze()
        if enabled:
            gc.enable()


def resume() -> None:
    """Let the collector run again during a build, as it did before the build paused it: steps
    are about to run."""
    if _resume_to:
        gc.enable()

"""`orch build --shard I/N`: deterministic shares of a plan's steps, one per CI machine.

Every machine computes the same shares from the same plan, with no coordination: the members
of a foreach group are dealt to the shares in turn, by item (starting at a share that depends
on the group's name, so that small groups do not all start at the first share); any other step
goes to the share its name hashes to. A shard builds the steps of its share and what they need.
The steps it needs from other shares are "foreign": it restores them from the remote cache,
waiting for their shard to upload them (see `engine.runner`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.plan.compiled import Plan

_FORM = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True)
class Shard:
    """The `index`-th (from 1) of `count` shares."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N` with 1 ≤ I ≤ N; ValueError saying what is wrong otherwise."""
        found = _FORM.fullmatch(text.strip())
        if found is None:
            raise ValueError(f"'{text}' is not a share: expected I/N, such as 1/3")
        index, count = int(found[1]), int(found[2])
        if count < 1 or not 1 <= index <= count:
            raise ValueError(f"'{text}' is not a share: I/N needs 1 ≤ I ≤ N")
        return cls(index, count)

    def owner(self, step_id: str, dealt: dict[str, int]) -> Shard:
        """The shard whose share holds `step_id`, given the shares dealt to group members."""
        share = dealt.get(step_id)
        if share is None:
            share = _hashed(step_id) % self.count
        return Shard(share + 1, self.count)

    def take(self, plan: Plan, selected: list[str], needed: Iterable[str] = ()) -> Taken:
        """The steps of `selected` this shard builds, in plan order: those of its share and
        everything they and `needed` (the writers of what later rounds plan from) wait for;
        each one of another share is mapped to its owner."""
        dealt = _dealt(plan, self.count)
        own = [s for s in selected if self.owner(s, dealt) == self]
        wanted = [*own, *needed]
        closure = set(plan.select(wanted)) if wanted else set()
        steps = [s for s in selected if s in closure]
        foreign = {s: self.owner(s, dealt) for s in steps if s not in own}
        return Taken(steps, foreign)


@dataclass(frozen=True)
class Taken:
    """What one shard builds: `steps`, and among them the `foreign` ones with their owners."""

    steps: list[str]
    foreign: dict[str, Shard]


def _dealt(plan: Plan, count: int) -> dict[str, int]:
    """Each group member's share (from 0): the members in item order, dealt in turn."""
    dealt: dict[str, int] = {}
    for group, members in sorted(plan.groups.items()):
        start = _hashed(group)
        for position, member in enumerate(members):
            dealt.setdefault(member, (start + position) % count)
    return dealt


def _hashed(name: str) -> int:
    """A number from a name, the same on every machine and Python (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")

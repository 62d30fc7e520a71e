"""`orch list`: the steps and foreach groups of a pipeline, as declared, with what they are for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from orchestrator.language.pipeline import LoadedPipeline
    from orchestrator.plan.compiled import Plan


class Entry(NamedTuple):
    """One declared step: a single step, or a `foreach` group of steps."""

    name: str
    kind: str
    description: str | None
    default: bool
    members: tuple[str, ...] | None
    """The steps of a foreach group (None for a single step)."""
    planned_after: tuple[str, ...] = ()
    """The steps whose outputs the group is planned from."""
    planned: bool = True
    """False: a group planned from outputs not written yet, so its steps are not known."""
    removed: str | None = None
    """Why its `if` removed the step, if it did."""

    def notes(self) -> list[str]:
        """What the list says of the entry beside its description."""
        found = []
        if self.members is not None:
            count = len(self.members)
            found.append(f"{count} step{'' if count == 1 else 's'}" if self.planned else "foreach")
        if self.planned_after:
            found.append(f"planned after {', '.join(self.planned_after)}")
        if not self.default:
            found.append("not built by default")
        if self.removed is not None:
            found.append(f"removed by {self.removed}")
        return found

    def to_json(self) -> dict[str, Any]:
        """`{"name", "kind", "description", "default", "group", "members", "planned_after"}`
        (`members` and `planned_after` for groups only; `members` is null for a group not
        planned yet)."""
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "default": self.default,
            "group": self.members is not None or not self.planned,
        }
        if data["group"]:
            data["members"] = list(self.members or ()) if self.planned else None
            data["planned_after"] = list(self.planned_after)
        if self.removed is not None:
            data["removed"] = self.removed
        return data


def entries(pipeline: LoadedPipeline, plan: Plan) -> list[Entry]:
    """Every step the pipeline declares, in declaration order."""
    found = []
    for name, spec in pipeline.spec.steps.items():
        members = plan.groups.get(name)
        if name in plan.deferred:
            after = plan.deferred[name]
            found.append(Entry(name, spec.kind, spec.description, spec.default, (), after, False))
            continue
        if members is None and spec.foreach is not None:
            members = ()  # every item removed by `if`, or an empty list
        after = _planned_from(plan, members or ())
        removed = pipeline.removed.get(name)
        found.append(
            Entry(name, spec.kind, spec.description, spec.default, members, after, True, removed)
        )
    return found


def _planned_from(plan: Plan, members: tuple[str, ...]) -> tuple[str, ...]:
    """The steps that write the files the members' expansion read."""
    writers: dict[str, None] = {}
    for member in members:
        for path, _ in plan.steps[member].expands:
            writer = plan.writer(path)
            if writer is not None:
                writers[writer[0]] = None
    return tuple(writers)

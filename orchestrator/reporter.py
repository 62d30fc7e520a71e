"""Plain-text progress lines for a build, one per step that does something, and a summary."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .events import Event

if TYPE_CHECKING:
    from .state import Assessment

Echo = Callable[[str], None]
WIDTH = 10


class PlainReporter:
    """Turns events into lines: what runs and why, what was restored, what failed."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo

    def __call__(self, event: Event) -> None:
        kind, step, data = event["type"], event["step"], event["data"]
        if kind == "step.started":
            self._line("run", step, "; ".join(data.get("reasons", [])))
        elif kind == "step.succeeded":
            self._line("ok", step, f"{data.get('duration_s', 0):.2f} s")
        elif kind == "step.restored":
            self._line("restored", step, "; ".join(data.get("reasons", [])))
        elif kind == "step.failed":
            self._line("FAILED", step, data.get("message", ""))
        elif kind == "lock.failed":
            self.echo(f"ERROR     {data.get('message', '')}")
        elif kind == "step.skipped" and data.get("reason") == "blocked":
            self._line("blocked", step, f"upstream step '{data.get('upstream')}' failed")

    def _line(self, label: str, step: str, detail: str) -> None:
        self.echo(f"{label:<{WIDTH}}{step}" + (f"  ({detail})" if detail else ""))


def summary(counts: dict[str, int], status: str, duration_s: float | None) -> str:
    """One line: how many steps ran, were restored, were up to date, failed."""
    total = sum(counts.values())
    if status == "succeeded" and counts.get("up-to-date", 0) == total:
        return f"all {total} step{'s' if total != 1 else ''} up to date"
    order = ("ran", "restored", "up-to-date", "failed", "blocked", "cancelled", "pending")
    parts = [f"{counts[name]} {name.replace('-', ' ')}" for name in order if counts.get(name)]
    timing = f" in {duration_s:.2f} s" if duration_s is not None else ""
    return f"{status}{timing}: " + ", ".join(parts)


def status_lines(assessments: Iterable[Assessment]) -> list[str]:
    """`orch status`: each step's action and the reasons for it."""
    lines = []
    for assessment in assessments:
        decision = assessment.decision
        detail = "; ".join(decision.reasons)
        lines.append(
            f"{decision.action.value:<{WIDTH + 2}}{assessment.step.id}"
            + (f"  ({detail})" if detail else "")
        )
    return lines

"""What a build prints: a line per step that does something, and a summary.

Off a terminal (or with `CI` set) the lines are plain and start with the local time; on a
terminal `live.LiveReporter` shows them above a view of the running steps. Under a failed
command's line come the last lines of its log; with `orch build -v`, each command and the lines
of its output as they are written (prefixed with the step's id when several steps may run at
once).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.cli.history_text import local_time
from orchestrator.engine.decide import Action
from orchestrator.record.events import Event
from orchestrator.record.status import JobStatus, Status

if TYPE_CHECKING:
    from orchestrator.engine.state import Assessment

Echo = Callable[[str], None]
WIDTH = 10
TIME_WIDTH = len("00:00:00 ")
EXCERPT_INDENT = "  "
"""How much further than the step's id a line of a failed command's output is indented."""
KEPT = "warning"
BARE = frozenset({KEPT})
"""Labels whose detail is printed as is, not in parentheses (it holds a command to copy)."""


def describe(event: Event) -> tuple[str, str | None, str] | None:
    """The label, step and detail of the line an event deserves, if any."""
    kind, step, data = event["type"], event["step"], event["data"]
    if kind == "step.started":
        return "run", step, "; ".join(data.get("reasons", []))
    if kind == "step.succeeded":
        return "ok", step, f"{data.get('duration_s', 0):.2f} s"
    if kind == "step.restored":
        return Status.RESTORED, step, "; ".join(_remote(data) + data.get("reasons", []))
    if kind == "step.failed":
        return "FAILED", step, data.get("message", "")
    if kind in ("lock.failed", "plan.failed"):
        return "ERROR", None, data.get("message", "")
    if kind == "cache.remote_skipped":
        return "warning", None, f"remote cache skipped: {data.get('message', '')}"
    if kind == "cache.remote_wait":
        return "wait", step, f"shard {data.get('shard')} builds it: waiting for its upload"
    if kind == "job.replanned":
        return "plan", None, replanned_text(data)
    if kind == "step.skipped" and data.get("reason") == Status.BLOCKED:
        return Status.BLOCKED, step, f"upstream step '{data.get('upstream')}' failed"
    if kind == "file.kept":
        return KEPT, step, kept_text(data)
    if kind == "file.undeclared_write":
        return KEPT, step, undeclared_text(step, data)
    if kind == "cache.miss" and data.get("reason"):
        return "warning", step, f"cache entry not used: {data['reason']}"
    return None


def _remote(data: Mapping[str, Any]) -> list[str]:
    return ["remote"] if data.get("remote") else []


def replanned_text(data: Mapping[str, Any]) -> str:
    """What a `job.replanned` event tells the user: how many steps, planned from whose output."""
    count, after = len(data.get("selected", [])), data.get("after", [])
    whose = " and ".join(f"'{name}'" for name in after) or "other steps"
    return f"{count} more step{'' if count == 1 else 's'} planned from the output of {whose}"


def kept_text(data: Mapping[str, Any]) -> str:
    """What a `file.kept` event tells the user: which file, and how to get it back."""
    return f"kept {kept_what(data)}; bring it back with: {data.get('command', '')}"


def kept_what(data: Mapping[str, Any]) -> str:
    """The file a `file.kept` event keeps: `your edit of PATH`, or `PATH, which orch had not
    recorded`."""
    path = data.get("path", "")
    edited = data.get("reason") == "edited"
    return f"your edit of {path}" if edited else f"{path}, which orch had not recorded"


_VERBS = {"modified": "changed", "removed": "removed"}


def undeclared_text(step: str | None, data: Mapping[str, Any]) -> str:
    """What a `file.undeclared_write` event tells the user: who wrote what of whose."""
    writer = f"step '{step}'"
    if data.get("alongside"):
        others = " or ".join(f"'{name}'" for name in data["alongside"])
        writer += f" (or {others}, running at the same time)"
    path, owner = data.get("path", ""), data.get("owner", "")
    change = data.get("change", "modified")
    if change == "added":
        what = f"added '{path}' to an output folder of step '{owner}'"
    else:
        what = f"{_VERBS.get(change, 'changed')} '{path}', an output of step '{owner}'"
    return f"{writer} {what}; the next build brings it back"


def excerpt_lines(event: Event) -> list[str]:
    """The lines under a failed command's line: the last lines of its log (indented), how many
    came before them, and the log's path; none for other events."""
    excerpt = event["data"].get("excerpt") if event["type"] == "step.failed" else None
    if not excerpt:
        return []
    log, earlier = excerpt.get("log", ""), excerpt.get("earlier", 0)
    cut = [f"… {earlier} earlier line{'' if earlier == 1 else 's'} in {log}"] if earlier else []
    shown = [f"{EXCERPT_INDENT}{line}".rstrip() for line in excerpt.get("lines", [])]
    return [*cut, *shown, f"log: {log}"]


def output_text(step: str, line: str, prefixed: bool) -> str:
    """A line of a step's output as `orch build -v` shows it: `[step] line` when prefixed."""
    return f"[{step}] {line}" if prefixed else line


class Reporter(Protocol):
    """What shows a build: each event, and (`orch build -v`) each line of a step's output."""

    def __call__(self, event: Event) -> None: ...

    def output(self, step: str, line: str) -> None: ...


class PlainReporter:
    """Turns events into timestamped lines: what runs and why, what was restored, what failed."""

    def __init__(self, echo: Echo, *, prefixed: bool = False) -> None:
        """`prefixed`: each line of a step's output starts with the step's id."""
        self.echo = echo
        self.prefixed = prefixed

    def __call__(self, event: Event) -> None:
        line = describe(event)
        if line is None:
            return
        self.echo(f"{local_time(event['ts'], '%H:%M:%S')} {line_text(*line)}")
        for extra in excerpt_lines(event):
            self.echo(" " * (TIME_WIDTH + WIDTH) + extra)

    def output(self, step: str, line: str) -> None:
        """A line of a step's output, as it is written (`orch build -v`)."""
        self.echo(output_text(step, line, self.prefixed))


def line_text(label: str, step: str | None, detail: str) -> str:
    """`label     step  (detail)`, or `label     detail` for a line about the whole build."""
    if step is None:
        return f"{label:<{WIDTH}}{detail}"
    return f"{label:<{WIDTH}}{step}" + _detail(detail, label)


def _detail(detail: str, label: str = "") -> str:
    if label in BARE:
        return f"  {detail}"
    return f"  ({detail})" if detail else ""


ORDER = (
    Status.RAN,
    Status.RESTORED,
    Status.UP_TO_DATE,
    Status.FAILED,
    Status.BLOCKED,
    Status.CANCELLED,
    Status.PENDING,
)
"""The step statuses a build's summary line counts, in its order."""


def summary(
    counts: Mapping[str, int],
    status: str,
    duration_s: float | None,
    usage: Mapping[str, Any] | None = None,
) -> str:
    """One line: how many steps ran, were restored, were up to date, failed; tokens and cost."""
    total = sum(counts.values())
    if status == JobStatus.SUCCEEDED and counts.get(Status.UP_TO_DATE, 0) == total:
        return f"all {total} step{'s' if total != 1 else ''} up to date"
    parts = [f"{counts[name]} {name.replace('-', ' ')}" for name in ORDER if counts.get(name)]
    timing = f" in {duration_s:.2f} s" if duration_s is not None else ""
    return f"{status}{timing}: " + ", ".join(parts) + _usage(usage or {})


def _usage(usage: Mapping[str, Any]) -> str:
    """`; 1,234 tokens, cost 0.0021` when the build called a provider."""
    if not usage.get("calls"):
        return ""
    tokens = usage.get("tokens", {})
    text = f"; {tokens.get('input', 0) + tokens.get('output', 0):,} tokens"
    return text + (f", cost {usage['cost']:.4f}" if "cost" in usage else "")


def status_lines(assessments: Iterable[Assessment]) -> list[str]:
    """`orch status`: each step's action and the reasons for it."""
    lines = []
    for assessment in assessments:
        decision = assessment.decision
        reasons = [*decision.reasons, *(["from the remote cache"] if assessment.remote else [])]
        lines.append(
            f"{decision.action.value:<{WIDTH + 2}}{assessment.step.id}"
            + _detail("; ".join(reasons))
        )
    return lines


def deferred_lines(deferred: Mapping[str, Iterable[str]]) -> list[str]:
    """`orch status`: the groups a build plans once other steps' outputs are written."""
    return [
        f"{'expands':<{WIDTH + 2}}{group}"
        + _detail("after " + " and ".join(f"'{step}'" for step in after))
        for group, after in deferred.items()
    ]


def removed_lines(removed: Mapping[str, str]) -> list[str]:
    """`orch status`: the steps a condition removed, and the condition."""
    return [f"{'skipped':<{WIDTH + 2}}{step}" + _detail(why) for step, why in removed.items()]


def status_summary(assessments: list[Assessment], stale: Collection[str]) -> str | None:
    """The last line of `orch status` when nothing is stale: all up to date, or up to date but
    for the steps always_run runs anyway."""
    if stale:
        return None
    total = len(assessments)
    waiting = sum(a.decision.action != Action.UP_TO_DATE for a in assessments)
    if not waiting:
        return f"all {total} steps up to date"
    return f"up to date; {waiting} of {total} steps would run only because of always_run"

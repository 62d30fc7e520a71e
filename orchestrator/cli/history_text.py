"""The text of `orch runs`, `orch show` and `orch tail`: tables of runs and steps, and one line
per event. What they show is read by `history`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.record.events import Event
from orchestrator.record.status import JobStatus, Status


def table(rows: list[list[str]], right: Iterable[int] = ()) -> list[str]:
    """Rows as aligned columns, two spaces apart; the `right` columns aligned to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    numeric = set(right)
    return [
        "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def local_time(ts: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An event or manifest timestamp (ISO-8601 UTC) in local time; blank when unknown."""
    if not ts:
        return ""
    try:
        return datetime.fromisoformat(ts).astimezone().strftime(fmt)
    except ValueError:
        return ts


def clock(ts: str | None) -> str:
    """`HH:MM:SS.mmm` in local time."""
    text = local_time(ts, "%H:%M:%S.%f")
    return text[:-3] if len(text) == 15 else text


def duration(seconds: float | None) -> str:
    """`0.42 s`, `3m 05s`, `1h 02m`; blank when unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def cost(usage: dict[str, Any]) -> str:
    """The cost in the price's currency, without trailing zeros; blank when no price is known."""
    if "cost" not in usage:
        return ""
    text = f"{float(usage['cost']):.8f}".rstrip("0").rstrip(".")
    return text or "0"


def tokens(usage: dict[str, Any]) -> str:
    """Input plus output tokens; blank when no provider was called."""
    counts = usage.get("tokens") or {}
    total = int(counts.get("input", 0)) + int(counts.get("output", 0))
    return str(total) if total or usage.get("calls") else ""


def pipeline_name(manifest: dict[str, Any]) -> str:
    """The manifest's pipeline, relative to its workdir when it lies inside it."""
    pipeline, workdir = str(manifest.get("pipeline", "")), manifest.get("workdir")
    if workdir and Path(pipeline).is_absolute():
        try:
            return Path(pipeline).relative_to(workdir).as_posix()
        except ValueError:
            pass
    return pipeline


def status_text(manifest: dict[str, Any], live: bool) -> str:
    """The run's status, saying whether a run whose manifest says running is still going."""
    status = str(manifest.get("status", ""))
    if status != JobStatus.RUNNING:
        return status
    return JobStatus.RUNNING if live else "unfinished"


RUN_COLUMNS = ["JOB", "PIPELINE", "STATUS", "STARTED", "DURATION"]
COUNT_COLUMNS = {
    "RAN": Status.RAN,
    "UP TO DATE": Status.UP_TO_DATE,
    "RESTORED": Status.RESTORED,
    "FAILED": Status.FAILED,
}


def runs_table(entries: list[tuple[dict[str, Any], bool]]) -> list[str]:
    """`orch runs`: one row per (manifest, live) pair."""
    rows = [[*RUN_COLUMNS, *COUNT_COLUMNS, "TOKENS", "COST"]]
    for manifest, live in entries:
        counts, usage = manifest.get("counts", {}), manifest.get("usage", {})
        rows.append(
            [
                str(manifest.get("job_id", "")),
                pipeline_name(manifest),
                status_text(manifest, live),
                local_time(manifest.get("started")),
                duration(manifest.get("duration_s")),
                *(str(counts.get(name, 0)) for name in COUNT_COLUMNS.values()),
                tokens(usage),
                cost(usage),
            ]
        )
    return table(rows, right=range(len(RUN_COLUMNS), len(rows[0])))


def run_summary(manifest: dict[str, Any], live: bool) -> dict[str, Any]:
    """`orch runs --json`: one run; `live` while a build is still writing it."""
    keys = ("job_id", "pipeline", "status", "started", "finished", "duration_s", "counts", "usage")
    running = live and manifest.get("status") == JobStatus.RUNNING
    return {**{key: manifest.get(key) for key in keys}, "live": running}


def show_lines(manifest: dict[str, Any], live: bool) -> list[str]:
    """`orch show`: the header, one row per step, pending steps and the totals."""
    lines = table([[f"{name}:", value] for name, value in _header(manifest, live)])
    lines += ["", *table(_step_rows(manifest), right=(2, 4, 5))]
    if manifest.get("status") != JobStatus.SUCCEEDED and manifest.get("pending_steps"):
        lines += ["", "pending steps: " + ", ".join(manifest["pending_steps"])]
    return [*lines, "", _totals(manifest.get("usage", {}))]


UNFINISHED = {
    True: "not finished yet; a build is writing it",
    False: "the build stopped without finishing: killed or crashed",
}


def _header(manifest: dict[str, Any], live: bool) -> list[tuple[str, str]]:
    status = status_text(manifest, live)
    if manifest.get("status") == JobStatus.RUNNING:
        status += f" ({UNFINISHED[live]})"
    return [
        ("job", str(manifest.get("job_id", ""))),
        ("pipeline", pipeline_name(manifest)),
        ("status", status),
        ("started", local_time(manifest.get("started"))),
        ("duration", duration(manifest.get("duration_s")) or "-"),
        ("targets", ", ".join(manifest.get("targets") or []) or "(all)"),
    ]


def _step_rows(manifest: dict[str, Any]) -> list[list[str]]:
    rows = [["STEP", "STATUS", "DURATION", "CACHE", "CALLS", "TOKENS", "FAILURE"]]
    for step_id, record in manifest.get("steps", {}).items():
        meta, failure = record.get("meta") or {}, record.get("failure")
        rows.append(
            [
                step_id,
                str(record.get("status", "")),
                duration(record.get("duration_s")),
                _cache_column(record),
                str(meta["calls"]) if meta.get("calls") else "",
                tokens(meta),
                f"{failure.get('kind')}: {_first_line(failure.get('message', ''))}"
                if failure
                else "",
            ]
        )
    return rows


def _cache_column(record: dict[str, Any]) -> str:
    """`restored` or `up to date` when the step needed no run; `miss` when it had to run."""
    status = record.get("status")
    if status in (Status.RESTORED, Status.UP_TO_DATE):
        return str(status).replace("-", " ")
    ran = status in (Status.RAN, Status.RUNNING) or record.get("duration_s") is not None
    return "miss" if ran else ""


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else ""


def _totals(usage: dict[str, Any]) -> str:
    counts = usage.get("tokens") or {}
    calls = int(usage.get("calls", 0))
    text = (
        f"totals: {calls} provider call{'s' if calls != 1 else ''}, tokens"
        f" {counts.get('input', 0)} in ({counts.get('cached', 0)} cached),"
        f" {counts.get('output', 0)} out"
    )
    return text + (f", cost {cost(usage)}" if "cost" in usage else "")


# --------------------------------------------------------------------------- event lines

VALUE_WIDTH = 80
HASH_WIDTH = 12


def event_line(event: Event) -> str:
    """`HH:MM:SS.mmm LEVEL type step key=value ...`, long values shortened."""
    data = event.get("data") or {}
    details = " ".join(f"{key}={_value(value)}" for key, value in data.items())
    head = (
        f"{clock(event.get('ts'))} {str(event.get('level', '')).upper():<7}"
        f" {event.get('type', ''):<15} {event.get('step') or '-'}"
    )
    return f"{head}  {details}" if details else head


def _value(value: Any) -> str:
    if isinstance(value, str):
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            return value[:HASH_WIDTH]  # a sha256 or a cache key
        plain = value and not any(c.isspace() or c in "\"'=" for c in value)
        text = value if plain else json.dumps(value, ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."

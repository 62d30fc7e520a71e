"""`orch report`: one build as a self-contained HTML page.

The page has inline CSS and inline SVG, needs no script to be read, and names no URL, so it
can be opened anywhere (a CI artifact, a mail attachment) without reaching the network. It
shows the run's header (pipeline, job, status, start, duration, counts, tokens and cost), the
timeline with the critical path (`orchestrator/record/timeline.py`), the step graph when a plan
saved in `.orch/plans/` holds every step of the run (`saved.step_graph`), the tokens and cost of
each llm step, and the end of the log of each failed step.

`collect` reads a run; `render` is pure: a `RunReport` in, the page's text out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from orchestrator.cli import history_text as text
from orchestrator.cli.svgdraw import MAX_GRAPH_STEPS, graph_svg, timeline_svg
from orchestrator.record.history import Run
from orchestrator.record.status import Status
from orchestrator.record.timeline import Timeline

GENERATOR = '<meta name="generator" content="orch report">'
"""The line that tells a page orch wrote: `write` replaces such a file, never another."""
LOG_LINES = 20
"""How many lines of a failed step's log the page shows."""
STATUS_ORDER = ("ran", "restored", "up-to-date", "failed", "blocked", "cancelled", "running")


@dataclass(frozen=True)
class RunReport:
    """What the page shows: the run's manifest, its timeline, the step graph (each step's
    predecessors; None when unknown), the last log lines of each failed step (None: no log),
    whether a build is still writing the run, and the pipeline's name."""

    manifest: dict[str, Any]
    timeline: Timeline
    preds: dict[str, tuple[str, ...]] | None
    logs: dict[str, list[str] | None]
    live: bool = False
    name: str = ""


def collect(workdir: Path, run: Run) -> RunReport:
    """Everything the page of `run` shows, read from its folder and the workdir's saved plans."""
    from orchestrator.plan.saved import step_graph
    from orchestrator.record import history
    from orchestrator.record.timeline import timeline

    manifest = history.read_manifest(run)
    events = history.read_events(run)
    name = next((_name(e) for e in events if e.get("type") == "job.started"), "")
    preds = step_graph(workdir, name, list(manifest.get("steps", {})))
    logs = {
        failure["step"]: history.log_tail(run, failure["step"], LOG_LINES)
        for failure in manifest.get("failures", [])
    }
    live = history.is_live(workdir, run)
    return RunReport(manifest, timeline(events, preds), preds, logs, live, name)


def _name(event: Mapping[str, Any]) -> str:
    name = (event.get("data") or {}).get("name")
    return name if isinstance(name, str) else ""


def write(path: Path, page: str) -> None:
    """Write the page to `path`, replacing an earlier report but no other file."""
    from orchestrator.core.errors import UsageError
    from orchestrator.store.filestore import atomic_write

    if path.exists() and not _is_report(path):
        raise UsageError(f"{path} exists and is not an orch report; remove it or choose another -o")
    try:
        atomic_write(path, page.encode("utf-8"), durable=False)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _is_report(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return GENERATOR.encode() in head


# --------------------------------------------------------------------------- the page


def render(report: RunReport) -> str:
    """The page of a run."""
    manifest = report.manifest
    title = f"{_heading(report)} {manifest.get('job_id', '')}"
    body = [
        _header(report),
        _timeline_section(report),
        _graph_section(report),
        _usage_section(manifest),
        _failures_section(manifest, report.logs),
    ]
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en">\n<head>\n<meta charset="utf-8">\n{GENERATOR}\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _heading(report: RunReport) -> str:
    return report.name or text.pipeline_name(report.manifest)


def _statuses(manifest: Mapping[str, Any]) -> dict[str, str]:
    return {step: str(r.get("status", "")) for step, r in manifest.get("steps", {}).items()}


def _header(report: RunReport) -> str:
    manifest = report.manifest
    usage = manifest.get("usage", {})
    status = text.status_text(manifest, report.live)
    rows = [
        ("pipeline", escape(text.pipeline_name(manifest))),
        ("job", escape(str(manifest.get("job_id", "")))),
        ("status", f'<span class="status {escape(status)}">{escape(status)}</span>'),
        ("started", escape(text.local_time(manifest.get("started"), "%Y-%m-%d %H:%M:%S %Z"))),
        ("duration", escape(text.duration(manifest.get("duration_s")) or "-")),
        ("steps", _counts(manifest.get("counts", {}))),
        ("tokens", escape(text.tokens(usage) or "0")),
        ("cost", f'<span id="total-cost">{escape(text.cost(usage) or "-")}</span>'),
    ]
    cells = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f'<header><h1>{escape(_heading(report))}</h1><dl class="summary">{cells}</dl></header>'


def _counts(counts: Mapping[str, int]) -> str:
    rank = {status: i for i, status in enumerate(STATUS_ORDER)}
    ordered = sorted(counts, key=lambda s: (rank.get(s, len(rank)), s))
    return (
        "".join(
            f'<span class="count {escape(status)}">{counts[status]} {escape(status)}</span>'
            for status in ordered
        )
        or "none"
    )


def _legend(statuses: Sequence[str], critical: bool) -> str:
    keys = [f'<span class="key {escape(s)}">{escape(s)}</span>' for s in statuses]
    if critical:
        keys.append('<span class="key critical">critical path</span>')
    return f'<p class="legend">{"".join(keys)}</p>'


def _shown_statuses(statuses: Mapping[str, str]) -> list[str]:
    present = set(statuses.values())
    return [s for s in STATUS_ORDER if s in present]


def _timeline_section(report: RunReport) -> str:
    statuses = _statuses(report.manifest)
    timeline = report.timeline
    if not timeline.bars:
        return "<section><h2>Timeline</h2><p>No step started in this run.</p></section>"
    how = "the step graph" if report.preds is not None else "the events alone (no saved plan)"
    path = " → ".join(escape(step) for step in timeline.critical)
    return (
        "<section><h2>Timeline</h2>"
        + _legend(_shown_statuses(statuses), bool(timeline.critical))
        + f'<div class="scroll">{timeline_svg(timeline, statuses)}</div>'
        + f'<p class="critical-path">Critical path, from {how}: {path}</p></section>'
    )


def _graph_section(report: RunReport) -> str:
    steps = list(report.manifest.get("steps", {}))
    if report.preds is None:
        note = (
            "The step graph is not known: no plan saved in .orch/plans/ holds every step of"
            " this run."
        )
        return f"<section><h2>Step graph</h2><p>{escape(note)}</p></section>"
    if len(steps) > MAX_GRAPH_STEPS:
        note = f"{len(steps)} steps: too many to draw (at most {MAX_GRAPH_STEPS})."
        return f"<section><h2>Step graph</h2><p>{escape(note)}</p></section>"
    svg = graph_svg(report.preds, steps, _statuses(report.manifest), report.timeline.critical)
    return f'<section><h2>Step graph</h2><div class="scroll">{svg}</div></section>'


USAGE_COLUMNS = ("step", "provider", "model", "calls", "input", "cached", "output", "cost")


def _usage_section(manifest: Mapping[str, Any]) -> str:
    steps = manifest.get("steps", {})
    llm = {s: r["meta"] for s, r in steps.items() if (r.get("meta") or {}).get("tokens")}
    if not llm:
        return "<section><h2>Tokens and cost</h2><p>No step called a model.</p></section>"
    head = "".join(f"<th>{name}</th>" for name in USAGE_COLUMNS)
    rows = [_usage_row(escape(step), meta) for step, meta in llm.items()]
    usage = manifest.get("usage", {})
    total = _usage_row("total", {**usage, "provider": "", "model": ""}, cost_id="usage-total")
    return (
        '<section><h2>Tokens and cost</h2><table class="usage">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f'<tfoot class="total">{total}</tfoot></table></section>'
    )


def _usage_row(label: str, meta: Mapping[str, Any], cost_id: str = "") -> str:
    tokens = meta.get("tokens") or {}
    cells = [
        escape(str(meta.get("provider") or "")),
        escape(str(meta.get("model") or "")),
        str(meta.get("calls", 0)),
        *(str(tokens.get(name, 0)) for name in ("input", "cached", "output")),
    ]
    id_attr = f' id="{cost_id}"' if cost_id else ""
    cost = f'<td class="num"{id_attr}>{escape(text.cost(dict(meta)))}</td>'
    return f"<tr><td>{label}</td>" + "".join(f"<td>{c}</td>" for c in cells) + cost + "</tr>"


def _failures_section(manifest: Mapping[str, Any], logs: Mapping[str, list[str] | None]) -> str:
    failures = manifest.get("failures", [])
    if not failures:
        return ""
    parts = ["<section><h2>Failures</h2>"]
    for failure in failures:
        step = str(failure.get("step", ""))
        lines = logs.get(step)
        tail = (
            f'<pre class="log">{escape(chr(10).join(lines))}</pre>' if lines else "<p>No log.</p>"
        )
        parts.append(
            f'<article class="failure" data-step="{escape(step)}"><h3>{escape(step)}</h3>'
            f"<p>{escape(str(failure.get('kind', '')))}:"
            f" {escape(str(failure.get('message', '')))}</p>"
            f"<p>The last lines of its log:</p>{tail}</article>"
        )
    parts.append("</section>")
    return "".join(parts)


STATUS_COLOURS = {
    Status.RAN: "#2e7d32",
    Status.RESTORED: "#1565c0",
    Status.UP_TO_DATE: "#9e9e9e",
    Status.FAILED: "#c62828",
    Status.BLOCKED: "#ef6c00",
    Status.CANCELLED: "#6a1b9a",
    Status.RUNNING: "#f9a825",
}


def _status_rules() -> str:
    return "".join(
        f".{status}>rect{{fill:{colour}}}"
        f".key.{status}::before,.count.{status}::before{{background:{colour}}}"
        f".status.{status}{{color:{colour}}}"
        for status, colour in STATUS_COLOURS.items()
    )


STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#212121;background:#fff}"
    "h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px}"
    "h3{font-size:15px;margin:16px 0 4px;font-family:monospace}"
    ".summary{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}"
    ".summary dt{color:#616161}.summary dd{margin:0}"
    ".status{font-weight:600}"
    ".scroll{overflow-x:auto}"
    "svg text{font:12px monospace;fill:#fff}"
    "svg text.tick,svg text.lane{fill:#616161;font-size:11px}"
    "line.tick{stroke:#eee}"
    ".node>rect{stroke:#424242;stroke-width:0.5}"
    ".node text{fill:#fff}"
    ".edge{fill:none;stroke:#9e9e9e;stroke-width:1.2}"
    ".edge.critical{stroke:#000;stroke-width:2.5}"
    ".critical>rect{stroke:#000;stroke-width:2.5}"
    ".legend{margin:4px 0}.key{margin-right:14px;white-space:nowrap}"
    ".key::before,.count::before{content:'';display:inline-block;width:11px;height:11px;"
    "margin-right:5px;vertical-align:-1px;border-radius:2px}"
    ".count{margin-right:10px}"
    ".key.critical::before{background:#fff;border:2.5px solid #000;width:8px;height:8px}"
    ".critical-path{font-family:monospace;font-size:12px;color:#424242}"
    "table.usage{border-collapse:collapse}"
    ".usage th,.usage td{padding:3px 10px;border-bottom:1px solid #e0e0e0;text-align:left}"
    ".usage td:nth-child(n+4){text-align:right;font-variant-numeric:tabular-nums}"
    ".usage tfoot td{font-weight:600;border-top:2px solid #616161}"
    ".log{background:#263238;color:#eceff1;padding:10px;overflow-x:auto;font-size:12px}"
    ".status.succeeded{color:#2e7d32}" + _status_rules()
)

"""Inline SVG for `orch report`: the timeline of a run and its step graph.

SVG inside HTML needs no namespace: the drawings name no URL at all.

Each drawing is text with every step id escaped; its elements carry CSS classes (a step's
status, `critical` on the critical path) that the page's stylesheet colours, and
`data-step="<id>"`. A `<title>` in each element gives its details on hover, without script.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape

from orchestrator.cli.history_text import duration
from orchestrator.record.timeline import Timeline

WIDTH = 1100
GUTTER = 64
LANE_HEIGHT = 24
BAR_HEIGHT = 18
AXIS_HEIGHT = 22
MIN_BAR = 3
CHAR_WIDTH = 7.2
"""About the width of one character of the 12 px monospace font the drawings use."""
LABEL_CHARS = 40
BOX_HEIGHT = 24
ROW_GAP = 10
LAYER_GAP = 56
MAX_GRAPH_STEPS = 400
"""Above this, the graph is not drawn: it would not be read."""


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _classes(*names: str) -> str:
    return escape(" ".join(name for name in names if name))


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- timeline


def timeline_svg(timeline: Timeline, statuses: Mapping[str, str]) -> str:
    """The timeline: a lane per worker, a bar per step, time along the top."""
    plot = WIDTH - GUTTER - 8
    span = timeline.span or 1.0
    height = AXIS_HEIGHT + max(timeline.lanes, 1) * LANE_HEIGHT + 4
    parts = [
        f'<svg id="timeline" width="{WIDTH}"'
        f' height="{height}" viewBox="0 0 {WIDTH} {height}" role="img"'
        ' aria-label="timeline of the steps">',
        *_axis(span, plot, height),
        *(_lane_label(lane) for lane in range(timeline.lanes)),
    ]
    for bar in timeline.bars:
        x = GUTTER + bar.start / span * plot
        width = max(MIN_BAR, (bar.end - bar.start) / span * plot)
        y = AXIS_HEIGHT + bar.lane * LANE_HEIGHT + (LANE_HEIGHT - BAR_HEIGHT) / 2
        status = statuses.get(bar.step, "")
        tip = f"{bar.step}: {status}" + (
            f", {duration(bar.end - bar.start)}" if bar.end > bar.start else ""
        )
        parts.append(
            f'<g class="{_classes("bar", status, "critical" if bar.critical else "")}"'
            f' data-step="{escape(bar.step)}"><title>{escape(tip)}</title>'
            f'<rect x="{_number(x)}" y="{_number(y)}" width="{_number(width)}"'
            f' height="{BAR_HEIGHT}" rx="2"/>' + _bar_label(bar.step, x, y, width) + "</g>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _bar_label(step: str, x: float, y: float, width: float) -> str:
    fits = int((width - 6) / CHAR_WIDTH)
    if fits < 4:
        return ""
    return (
        f'<text x="{_number(x + 3)}" y="{_number(y + BAR_HEIGHT - 5)}">'
        f"{escape(_short(step, fits))}</text>"
    )


def _lane_label(lane: int) -> str:
    y = AXIS_HEIGHT + lane * LANE_HEIGHT + LANE_HEIGHT / 2 + 4
    return f'<text class="lane" x="4" y="{_number(y)}">lane {lane + 1}</text>'


def _axis(span: float, plot: float, height: int) -> list[str]:
    """Ticks at a round step of time, each with a line down through the lanes."""
    step = _tick_step(span)
    ticks = []
    for i in range(int(span / step) + 1):
        x = GUTTER + i * step / span * plot
        ticks.append(
            f'<line class="tick" x1="{_number(x)}" y1="{AXIS_HEIGHT - 4}" x2="{_number(x)}"'
            f' y2="{height}"/><text class="tick" x="{_number(x + 2)}" y="12">'
            f"{escape(_tick_text(i * step))}</text>"
        )
    return ticks


def _tick_step(span: float, wanted: int = 8) -> float:
    """A round interval (1, 2 or 5 times a power of ten) giving about `wanted` ticks."""
    raw = span / wanted
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick_text(seconds: float) -> str:
    return "0" if seconds == 0 else duration(seconds).replace(".00 s", " s")


# --------------------------------------------------------------------------- step graph


def depths(preds: Mapping[str, Sequence[str]], order: Sequence[str]) -> dict[str, int]:
    """Each step's layer: 0 without predecessors, else one more than its deepest predecessor
    (`order` lists predecessors first, as plans do)."""
    found: dict[str, int] = {}
    for step in order:
        found[step] = 1 + max((found.get(p, 0) for p in preds.get(step, ())), default=-1)
    return found


def layers(preds: Mapping[str, Sequence[str]], order: Sequence[str]) -> list[list[str]]:
    """The steps by layer; within a layer, by the mean row of their predecessors, which keeps
    edges from crossing where it can."""
    depth = depths(preds, order)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    row: dict[str, int] = {}
    for step in order:
        grouped[depth[step]].append(step)
    for layer in grouped:
        layer.sort(key=lambda s: _mean(row[p] for p in preds.get(s, ()) if p in row))
        row.update((step, i) for i, step in enumerate(layer))
    return grouped


def _mean(values: Iterable[int]) -> float:
    numbers = list(values)
    return sum(numbers) / len(numbers) if numbers else 0.0


def graph_svg(
    preds: Mapping[str, Sequence[str]],
    order: Sequence[str],
    statuses: Mapping[str, str],
    critical: Sequence[str],
) -> str:
    """The step graph: a column per layer, a box per step, a curve per edge."""
    grouped = layers(preds, order)
    boxes = _place(grouped)
    on_path = set(itertools.pairwise(critical))
    tallest = max((len(layer) for layer in grouped), default=0)
    height = tallest * (BOX_HEIGHT + ROW_GAP) + ROW_GAP
    width = max((x + w for x, _, w in boxes.values()), default=0) + 8
    parts = [
        f'<svg id="graph" width="{_number(width)}"'
        f' height="{height}" viewBox="0 0 {_number(width)} {height}" role="img"'
        ' aria-label="step graph">'
    ]
    for step in order:
        for pred in preds.get(step, ()):
            parts.append(_edge(boxes[pred], boxes[step], (pred, step) in on_path))
    path = set(critical)
    for step in order:
        parts.append(_box(step, boxes[step], statuses.get(step, ""), step in path))
    parts.append("</svg>")
    return "\n".join(parts)


def _place(grouped: list[list[str]]) -> dict[str, tuple[float, float, float]]:
    """Each step's box: left x, top y, width; layers centred on the tallest."""
    tallest = max((len(layer) for layer in grouped), default=0)
    boxes: dict[str, tuple[float, float, float]] = {}
    x = 8.0
    for layer in grouped:
        width = max(len(_short(s, LABEL_CHARS)) for s in layer) * CHAR_WIDTH + 16
        top = ROW_GAP + (tallest - len(layer)) * (BOX_HEIGHT + ROW_GAP) / 2
        for i, step in enumerate(layer):
            boxes[step] = (x, top + i * (BOX_HEIGHT + ROW_GAP), width)
        x += width + LAYER_GAP
    return boxes


def _edge(
    start: tuple[float, float, float], end: tuple[float, float, float], critical: bool
) -> str:
    x1, y1 = start[0] + start[2], start[1] + BOX_HEIGHT / 2
    x2, y2 = end[0], end[1] + BOX_HEIGHT / 2
    middle = (x1 + x2) / 2
    d = (
        f"M{_number(x1)} {_number(y1)} C{_number(middle)} {_number(y1)},"
        f" {_number(middle)} {_number(y2)}, {_number(x2)} {_number(y2)}"
    )
    return f'<path class="{_classes("edge", "critical" if critical else "")}" d="{d}"/>'


def _box(step: str, box: tuple[float, float, float], status: str, critical: bool) -> str:
    x, y, width = box
    return (
        f'<g class="{_classes("node", status, "critical" if critical else "")}"'
        f' data-step="{escape(step)}"><title>{escape(f"{step}: {status}")}</title>'
        f'<rect x="{_number(x)}" y="{_number(y)}" width="{_number(width)}"'
        f' height="{BOX_HEIGHT}" rx="4"/>'
        f'<text x="{_number(x + 8)}" y="{_number(y + BOX_HEIGHT / 2 + 4)}">'
        f"{escape(_short(step, LABEL_CHARS))}</text></g>"
    )

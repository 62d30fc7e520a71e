"""The live view of a build on a terminal: a row per running step with a spinner, its elapsed
time and its tokens, above which each step that finishes leaves a line.

Only used when standard output is a terminal and `CI` is not set; `NO_COLOR` turns colours off
(rich reads it). Events arrive on the build's thread; rich redraws from its own, so the view
keeps what it draws in plain attributes and copies them before drawing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from orchestrator.cli.reporter import WIDTH, describe, excerpt_lines, line_text, output_text
from orchestrator.record.events import Event
from orchestrator.record.status import Status

STYLES = {
    "ok": "green",
    Status.RESTORED: "cyan",
    "FAILED": "bold red",
    "ERROR": "bold red",
    Status.BLOCKED: "yellow",
    "warning": "yellow",
}


@dataclass
class _Running:
    started: float
    tokens: int = 0


class LiveReporter:
    """Listens to a build's events and keeps the terminal up to date."""

    def __init__(self, console: Console | None = None, *, prefixed: bool = False) -> None:
        """`prefixed`: each line of a step's output starts with the step's id."""
        self.console = console or Console()
        self.prefixed = prefixed
        self.running: dict[str, _Running] = {}
        self.spinner = Spinner("dots", style="cyan")
        self.live = Live(self, console=self.console, refresh_per_second=10, transient=True)

    def __enter__(self) -> LiveReporter:
        self.live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.live.stop()

    def __call__(self, event: Event) -> None:
        kind, step = event["type"], event["step"]
        if kind == "step.started":
            self.running[step] = _Running(time.monotonic())
        elif kind == "llm.response" and step in self.running:
            tokens = event["data"].get("tokens", {})
            self.running[step].tokens += tokens.get("input", 0) + tokens.get("output", 0)
        elif kind in ("step.succeeded", "step.failed"):
            self.running.pop(step, None)
        line = describe(event)
        if line is not None and line[0] != "run":
            self._print(*line)
            for extra in excerpt_lines(event):
                self._print_plain(" " * WIDTH + extra)

    def output(self, step: str, line: str) -> None:
        """A line of a step's output above the view, as it is written (`orch build -v`)."""
        self._print_plain(output_text(step, line, self.prefixed))

    def _print_plain(self, line: str) -> None:
        self.live.console.print(Text(line), soft_wrap=True)

    def _print(self, label: str, step: str | None, detail: str) -> None:
        """One line above the view; not wrapped by rich, so a command in it copies whole."""
        body = line_text(label, step, detail)
        text = Text.assemble((body[:WIDTH], STYLES.get(label, "")), body[WIDTH:])
        self.live.console.print(text, soft_wrap=True)

    def __rich__(self) -> RenderableType:
        rows = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for step, running in list(self.running.items()):
            tokens = f"{running.tokens:,} tokens" if running.tokens else ""
            rows.add_row(self.spinner, Text(step), f"{now - running.started:.1f} s", tokens)
        return rows

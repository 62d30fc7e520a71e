"""Build events: one JSON object per line in `events.jsonl`.

A line reaches the file at once when it ends a step or the job, or is a warning or an error;
any other line within `FLUSH_S` (on an event loop; at once outside one), so a follower sees
every event soon and a killed build has flushed every event of its finished steps.

    {"ts": "2026-11-24T10:15:00.123Z", "level": "info", "job_id": "...",
     "type": "step.started", "step": "architect", "data": {...}}

Listeners (the terminal reporter) see every event as it is written, secret values masked
(see `masking`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.core.errors import IoFailure, io_failure
from orchestrator.record.masking import Masker

if TYPE_CHECKING:
    import asyncio

Event = dict[str, Any]
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
Listener = Callable[[Event], None]
FLUSH_S = 0.05
"""At most this long between an event and its line reaching the file."""
FLUSHED_AT_ONCE = frozenset(
    {"step.succeeded", "step.failed", "step.skipped", "step.restored", "plan.failed"}
    | {"job.succeeded", "job.failed", "job.cancelled", "lock.failed"}
)
"""Event types whose line reaches the file before `emit` returns (with every line before it)."""


_SECOND: list[Any] = [None, ""]
"""The last whole second a timestamp was made in, and its text (a build makes many a second)."""


def timestamp() -> str:
    """Now, as ISO-8601 UTC with milliseconds and a Z."""
    second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    if second != _SECOND[0]:
        _SECOND[:] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_SECOND[1]}.{nanoseconds // 1_000_000:03d}Z"


def _line(event: Event) -> str:
    """The JSON line of an event: the envelope's fields are plain ASCII words, so only the step
    and the data need an encoder."""
    return (
        f'{{"ts": "{event["ts"]}", "level": "{event["level"]}", "job_id": "{event["job_id"]}",'
        f' "type": "{event["type"]}", "step": {_ENCODER.encode(event["step"])},'
        f' "data": {_ENCODER.encode(event["data"])}}}\n'
    )


class EventLog:
    """Writes a job's events to a file (when given one) and passes them to listeners."""

    def __init__(
        self,
        job_id: str,
        path: Path | None = None,
        masker: Masker | None = None,
        *,
        held: bool = False,
    ) -> None:
        """`masker` hides secret values in every event's data. `held`: keep the events in
        memory until `open` is called (they may never need a file, nor their lines encoding)."""
        self.job_id = job_id
        self.masker = masker or Masker()
        self.listeners: list[Listener] = []
        self.path = path
        self.failure: IoFailure | None = None
        """Why the file stopped being written (the disk is full, ...); listeners still get all."""
        self._file: IO[str] | None = None
        self._held: list[Event] | None = [] if held else None
        self._flush_due: asyncio.TimerHandle | None = None
        if path is not None and not held:
            self.open()

    def open(self) -> None:
        """Open the file and write the lines held so far."""
        assert self.path is not None
        with io_failure("open the events file", self.path):
            self._file = self.path.open("a", encoding="utf-8")
        held, self._held = self._held or [], None
        if held:
            self._write("".join(map(_line, held)))
            self.flush()

    @property
    def is_held(self) -> bool:
        """Whether lines are still kept in memory, with no file open yet."""
        return self._held is not None

    def emit(self, type: str, step: str | None = None, level: str = "info", **data: Any) -> Event:
        """Record one event."""
        event = {
            "ts": timestamp(),
            "level": level,
            "job_id": self.job_id,
            "type": type,
            "step": step,
            "data": self.masker.value(data) if self.masker else data,
        }
        if self._file is not None:
            self._write(_line(event))
            if type in FLUSHED_AT_ONCE or level in ("warning", "error"):
                self.flush()
            else:
                self._flush_soon()
        elif self._held is not None:
            self._held.append(event)
        for listener in self.listeners:
            listener(event)
        return event

    def _write(self, line: str) -> None:
        """Append a line; on an OSError, remember it as `failure` and stop writing the file."""
        assert self._file is not None
        try:
            self._file.write(line)
        except OSError as exc:
            self._failed(exc)

    def flush(self) -> None:
        """Send the lines written so far to the file."""
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._failed(exc)

    def _flush_soon(self) -> None:
        """Flush within FLUSH_S on the running event loop; at once without one."""
        if self._flush_due is not None:
            return
        module = sys.modules.get("asyncio")  # a build that runs nothing never imports it
        try:
            loop = module.get_running_loop() if module else None
        except RuntimeError:
            loop = None
        if loop is None:
            self.flush()
            return
        self._flush_due = loop.call_later(FLUSH_S, self._flush_due_now)

    def _flush_due_now(self) -> None:
        self._flush_due = None
        self.flush()

    def _failed(self, exc: OSError) -> None:
        """Remember why the file stopped being written, and stop writing it."""
        self.failure = IoFailure("write the events file", exc, self.path)
        self.close()

    def close(self) -> None:
        """Close the file (an error closing it becomes `failure`)."""
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as exc:
            self.failure = self.failure or IoFailure("write the events file", exc, self.path)

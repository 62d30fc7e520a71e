"""The last lines of a step log: the excerpt a failed command's `step.failed` event carries.

The log is read once, in chunks, counting its lines and keeping only its end, so a log of any
size costs little memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

LINES = 20
"""How many of a log's last lines an excerpt shows."""
LINE_CHARS = 1000
"""A longer line is cut to this many characters, and `…` added."""
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Excerpt:
    """The last lines of a log, how many lines came before them, and the log's path."""

    lines: tuple[str, ...]
    earlier: int
    log: str

    def as_event_data(self) -> dict[str, Any]:
        """The `excerpt` of a `step.failed` event."""
        return {"lines": list(self.lines), "earlier": self.earlier, "log": self.log}


def tail(path: Path, start: int = 0, limit: int = LINES) -> Excerpt | None:
    """The last `limit` lines of the log from byte `start` on; None when it holds none or
    cannot be read."""
    try:
        count, end = _scan(path, start)
    except OSError:
        return None
    lines = end.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the log ends with a newline
    if not lines:
        return None
    kept = lines[-limit:]
    return Excerpt(tuple(_text(line) for line in kept), count - len(kept), str(path))


def _scan(path: Path, start: int) -> tuple[int, bytes]:
    """The number of lines from `start` on, and the log's last two chunks."""
    newlines, last, previous = 0, b"", b""
    with path.open("rb") as log:
        log.seek(start)
        while chunk := log.read(_CHUNK):
            newlines += chunk.count(b"\n")
            previous, last = last, chunk
    end = previous + last
    return newlines + (1 if end and not end.endswith(b"\n") else 0), end


def _text(line: bytes) -> str:
    """One line as text: undecodable bytes replaced, a carriage return dropped, cut if long."""
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    return text if len(text) <= LINE_CHARS else text[:LINE_CHARS] + "…"

"""How much a workdir's builds got from the shared remote cache: `orch cache info` shows it.

`.orch/remote-tally.json` holds three counts, added to after each build, `cache pull` and
`cache push` that used the remote. It is read back as untrusted: anything but three
non-negative whole numbers counts as a fresh tally.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path

from orchestrator.store.filestore import atomic_write


@dataclass
class Tally:
    """Lookups of step keys in the remote, how many it had, and results uploaded to it."""

    lookups: int = 0
    hits: int = 0
    uploads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, lookups: int = 0, hits: int = 0, uploads: int = 0) -> None:
        """Count more (from any thread: uploads run in several)."""
        with self._lock:
            self.lookups += lookups
            self.hits += hits
            self.uploads += uploads

    @classmethod
    def read(cls, path: Path) -> Tally:
        """The tally kept in `path`; a fresh one if it is missing or not a tally."""
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return cls()
        names = [f.name for f in fields(cls) if f.compare]
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            return cls()
        counts = [data[name] for name in names]
        if any(type(count) is not int or count < 0 for count in counts):
            return cls()
        return cls(*counts)

    def add_to(self, path: Path) -> None:
        """Add these counts to those kept in `path` (nothing to add: nothing written)."""
        if not (self.lookups or self.uploads):
            return
        kept = Tally.read(path)
        total = {
            "lookups": kept.lookups + self.lookups,
            "hits": kept.hits + self.hits,
            "uploads": kept.uploads + self.uploads,
        }
        atomic_write(path, json.dumps(total).encode(), durable=False)

    def line(self) -> str:
        """`12 of 30 lookups hit, 18 results uploaded`."""
        results = "result" if self.uploads == 1 else "results"
        return f"{self.hits} of {self.lookups} lookups hit, {self.uploads} {results} uploaded"

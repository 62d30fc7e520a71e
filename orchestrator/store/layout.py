"""The `.orch/` folder of a workdir: every file and folder orch keeps there, named once.

.orch/cache/            content-addressed objects and action records
.orch/runs/<job_id>/    one build's events, logs and manifest
.orch/plans/            saved plans, one per pipeline file
.orch/stat-cache.json   file hashes by inode, mtime, ctime and size
.orch/build.lock        names the build that holds the workdir
.orch/building          present while a build runs: its absence means it ended
.orch/processes/        one record per running shell step
.orch/batches/          one record per provider batch a build waits on
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import io_failure

STATE_DIR = ".orch"
_IGNORE_ALL = "# Created by orch: this folder is local state.\n*\n"


@dataclass(frozen=True)
class StateFolder:
    """Where orch keeps its state for one workdir."""

    workdir: Path

    @property
    def root(self) -> Path:
        return self.workdir / STATE_DIR

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, job_id: str) -> Path:
        """The run folder of one build."""
        return self.runs / job_id

    @property
    def plans(self) -> Path:
        return self.root / "plans"

    @property
    def stat_cache(self) -> Path:
        return self.root / "stat-cache.json"

    @property
    def build_lock(self) -> Path:
        return self.root / "build.lock"

    @property
    def build_marker(self) -> Path:
        return self.root / "building"

    @property
    def processes(self) -> Path:
        return self.root / "processes"

    @property
    def batches(self) -> Path:
        return self.root / "batches"

    @property
    def remote_tally(self) -> Path:
        return self.root / "remote-tally.json"

    def ensure(self) -> Path:
        """Create `.orch/`, with a `.gitignore` that keeps it out of version control."""
        with io_failure("create the state folder", self.root):
            self.root.mkdir(exist_ok=True)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                ignore.write_text(_IGNORE_ALL, "utf-8")
        return self.root

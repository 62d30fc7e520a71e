"""Helpers for signal tests: when orch's handler is in place, and how a signalled build ended.

A build signalled at any moment must end the same way: exit 130 (or 0 if it had finished), no
traceback, no temp file, a lock file that parses, and a run (if one was opened) that is closed:
`job.cancelled` last and a manifest that says so. The next build then completes and the one
after runs nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .buildkit import Project, read_events, wait_for

CANCELLED = 130


def handles_sigterm(pid: int) -> bool:
    """Whether the process catches SIGTERM (orch installs its handler first thing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def wait_until_handled(process: subprocess.Popen[str]) -> None:
    """Wait until orch's signal handler is in place (or the process is gone)."""
    wait_for(
        lambda: process.poll() is not None or handles_sigterm(process.pid),
        what="orch's signal handler",
    )


def temp_files(root: Path) -> list[str]:
    """Every temp file `atomic_write` could leave, anywhere under root (`.orch/` included)."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*.tmp"))


@dataclass
class Ending:
    """How a signalled build ended."""

    code: int
    stderr: str
    run: Path | None
    """The run folder it opened, if it got that far."""


def ended(
    project: Project, process: subprocess.Popen[str], before: set[Path], *, may_finish: bool
) -> Ending:
    """Wait for a signalled build and check it ended cleanly; `may_finish`: exit 0 is fine."""
    _, stderr = process.communicate(timeout=30)
    assert process.returncode in ((CANCELLED, 0) if may_finish else (CANCELLED,)), stderr
    assert "Traceback" not in stderr, stderr
    assert temp_files(project.root) == []
    project.lock()  # parses
    runs = project.run_folders() - before
    assert len(runs) <= 1
    run = runs.pop() if runs else None
    if run is not None:
        _check_closed(run, "cancelled" if process.returncode == CANCELLED else "succeeded")
    return Ending(process.returncode, stderr, run)


def _check_closed(run: Path, status: str) -> None:
    """The run's last event ends the job with `status`, and its manifest says the same."""
    events = read_events(run)
    assert events, f"{run.name} has no events"
    assert events[-1]["type"] == f"job.{status}", events[-1]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == status
    assert manifest["finished"] is not None


def resumes(project: Project) -> None:
    """The next build completes; the one after it runs and restores nothing."""
    resumed = project.orch("build")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    again = project.orch("build")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.started() == []
    assert again.events("step.restored") == []

"""Helpers for tests of the flagship pipeline: a copy of its inputs, orch as a process, and the
files a build generates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, SETTINGS_PREFIXES

PIPELINE = "pipelines/notes_app.yaml"
SOURCES = ("pipelines", "specs")
"""What the pipeline reads: its file, prompts, sample replies and the spec (not its lock)."""
OUTPUTS = ("generated", "build")
GOLDEN = ROOT / "tests" / "golden"
FILES_LIST = "build/notes_api/design/files.json"
"""The architect's list of the files to write, one builder step each."""


def copy_inputs(destination: Path) -> Path:
    """The pipeline's inputs, copied without the lock file or any output."""
    for name in SOURCES:
        shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("*.lock"))
    return destination


def environment(**extra: str) -> dict[str, str]:
    """The environment of a build: this interpreter first on PATH, no orch or provider settings."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}
    keep["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{keep.get('PATH', '')}"
    return {**keep, **extra}


def orch(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `orch` in `cwd` as a process."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def generated(root: Path) -> dict[str, bytes]:
    """Every file a build of the pipeline wrote under `root`, by relative path."""
    found = {}
    for name in OUTPUTS:
        for path in sorted((root / name).rglob("*")):
            if path.is_file():
                found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def builders(root: Path) -> list[str]:
    """The builder steps of the file list the architect wrote under `root`, in its order."""
    rows = json.loads((root / FILES_LIST).read_text(encoding="utf-8"))
    return [f"builder@{row['path']}" for row in rows]

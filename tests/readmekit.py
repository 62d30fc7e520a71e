"""Reading the README's sections and code blocks, and replaying its console sessions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT
from .notes_kit import environment

TIMING = re.compile(r"\d+\.\d\d s|^\d\d:\d\d:\d\d", re.MULTILINE)
"""Durations and clock times, which change from run to run."""


def section(title: str, text: str | None = None) -> str:
    """The `## title` section of the README (or of `text`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8") if text is None else text
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def blocks(found: str, language: str) -> list[str]:
    """The fenced code blocks of `language` in a section."""
    return re.findall(rf"```{language}\n(.*?)```", found, re.DOTALL)


def replay(session: str, cwd: Path, *, stop_on_error: bool = False) -> tuple[str, str, str]:
    """Run a console session's `$ ` commands in `cwd` with bash (`-e` with `stop_on_error`):
    what they printed and what the session shows, timings blanked in both, and stderr."""
    lines = session.splitlines()
    commands = [line[2:] for line in lines if line.startswith("$ ")]
    expected = "".join(f"{line}\n" for line in lines if not line.startswith("$ "))
    script = f'orch() {{ "{sys.executable}" -m orchestrator "$@"; }}\n' + "\n".join(commands)
    done = subprocess.run(
        ["bash", "-ec" if stop_on_error else "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=environment(),
    )
    return TIMING.sub("T", done.stdout), TIMING.sub("T", expected), done.stderr

"""The README's console sessions give the output the README shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT
from .readmekit import blocks, replay, section


@pytest.mark.parametrize("title", ["Building", "LLM steps"])
def test_a_console_session_of_the_readme_replays(tmp_path: Path, title: str) -> None:
    found = section(title)
    (pipeline,) = blocks(found, "yaml")
    (session,) = blocks(found, "console")
    (tmp_path / "orch.yaml").write_text(pipeline, encoding="utf-8")
    printed, shown, errors = replay(session, tmp_path)
    assert printed == shown, errors


def _console(found: str) -> tuple[str, str]:
    """The first command of a section's console block and the output shown after it."""
    (session, *_) = blocks(found, "console")
    first, *rest = session.splitlines()
    shown = []
    for line in rest:
        if line.startswith("$ "):
            break
        shown.append(line)
    return first[2:], "".join(f"{line}\n" for line in shown)


def test_the_commands_section_shows_real_graph_and_validate_output(tmp_path: Path) -> None:
    commands = section("Commands")
    graph_command, graph_shown = _console(commands)
    assert graph_command == "orch graph pipelines/notes_app.yaml --format mermaid"
    graph = subprocess.run(
        [sys.executable, "-m", "orchestrator", *graph_command.split()[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert graph.stdout == graph_shown

    (example, *_) = blocks(section("The language by example"), "yaml")
    misspelt = example.replace(
        "    inputs: [templates/page.html.j2", "    imputs: [templates/page.html.j2"
    )
    assert misspelt != example
    (tmp_path / "report.yaml").write_text(misspelt, encoding="utf-8")
    session = commands[commands.index("$ orch validate report.yaml") :]
    shown = session.split("\n$ ", 1)[0].split("\n", 1)[1] + "\n"
    validate = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", "report.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert validate.returncode == 2
    assert validate.stderr == shown

"""The README's console sessions give the output the README shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT
from .notes_kit import environment

TIMING = re.compile(r"\d+\.\d\d s|^\d\d:\d\d:\d\d", re.MULTILINE)


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


@pytest.mark.parametrize("title", ["Building", "LLM steps"])
def test_a_console_session_of_the_readme_replays(tmp_path: Path, title: str) -> None:
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), title)
    (pipeline,) = _blocks(section, "yaml")
    (session,) = _blocks(section, "console")
    (tmp_path / "orch.yaml").write_text(pipeline, encoding="utf-8")
    lines = session.splitlines()
    commands = [line[2:] for line in lines if line.startswith("$ ")]
    expected = "".join(f"{line}\n" for line in lines if not line.startswith("$ "))
    script = f'orch() {{ "{sys.executable}" -m orchestrator "$@"; }}\n' + "\n".join(commands)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=environment(),
    )
    assert TIMING.sub("T", done.stdout) == TIMING.sub("T", expected), done.stderr


def _console(section: str) -> tuple[str, str]:
    """The first command of a section's console block and the output shown after it."""
    (session, *_) = _blocks(section, "console")
    first, *rest = session.splitlines()
    shown = []
    for line in rest:
        if line.startswith("$ "):
            break
        shown.append(line)
    return first[2:], "".join(f"{line}\n" for line in shown)


def test_the_commands_section_shows_real_graph_and_validate_output(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = _section(text, "Commands")
    graph_command, graph_shown = _console(section)
    assert graph_command == "orch graph pipelines/notes_app.yaml --format mermaid"
    graph = subprocess.run(
        [sys.executable, "-m", "orchestrator", *graph_command.split()[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert graph.stdout == graph_shown

    (example, *_) = _blocks(_section(text, "The language by example"), "yaml")
    misspelt = example.replace(
        "    inputs: [templates/page.html.j2", "    imputs: [templates/page.html.j2"
    )
    assert misspelt != example
    (tmp_path / "report.yaml").write_text(misspelt, encoding="utf-8")
    session = section[section.index("$ orch validate report.yaml") :]
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

"""The README's console sessions give the output the README shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

TIMING = re.compile(r"\d+\.\d\d s")


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
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "OPENAI_"))}
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=environ,
    )
    assert TIMING.sub("T s", done.stdout) == TIMING.sub("T s", expected), done.stderr

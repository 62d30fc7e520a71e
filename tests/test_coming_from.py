"""Every orch pipeline of docs/coming-from.md is valid, and its worked examples build.

A pipeline block may follow a hidden `<!-- example ... -->` comment, a YAML mapping with
`files` (path: content, written beside the pipeline) and `build` (true: build it twice, the
second build running nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from .conftest import ROOT
from .notes_kit import orch

PAGE = ROOT / "docs" / "coming-from.md"
BLOCK = re.compile(r"(?:<!-- example\n(?P<setup>.*?)-->\n)?```yaml\n(?P<body>.*?)```", re.DOTALL)


@dataclass
class Example:
    """A pipeline shown on the page, the files it expects and whether to build it."""

    line: int
    pipeline: str
    files: dict[str, str] = field(default_factory=dict)
    build: bool = False

    def write(self, folder: Path) -> None:
        """Write the pipeline as `orch.yaml` and its files into `folder`."""
        for relative, content in {**self.files, "orch.yaml": self.pipeline}.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")


def _examples() -> list[Example]:
    """The page's yaml blocks that are orch pipelines (they hold `version: 1`)."""
    text = PAGE.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        if not re.search(r"^version: 1\b", match["body"], re.MULTILINE):
            continue
        setup: dict[str, Any] = YAML(typ="safe").load(match["setup"] or "") or {}
        line = text.count("\n", 0, match.start("body")) + 1
        files, build = setup.get("files", {}), setup.get("build", False)
        found.append(Example(line, match["body"], dict(files), bool(build)))
    return found


EXAMPLES = _examples()


def test_the_page_shows_a_worked_example_per_tool() -> None:
    assert len([example for example in EXAMPLES if example.build]) == 4


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: f"line{example.line}")
def test_orch_validate_accepts_each_pipeline(tmp_path: Path, example: Example) -> None:
    example.write(tmp_path)
    done = orch(tmp_path, "validate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("orch.yaml: ok")


@pytest.mark.parametrize(
    "example", [e for e in EXAMPLES if e.build], ids=lambda example: f"line{example.line}"
)
def test_a_worked_example_builds_then_is_up_to_date(tmp_path: Path, example: Example) -> None:
    example.write(tmp_path)
    first = orch(tmp_path, "build")
    assert first.returncode == 0, first.stdout + first.stderr
    again = orch(tmp_path, "build")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("all ") and "up to date" in again.stdout

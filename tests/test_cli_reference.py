"""`docs/cli.md` is the reference the commands give today."""

from __future__ import annotations

from orchestrator.cli.commands import cli
from orchestrator.cli.reference import reference

from .conftest import ROOT

REGENERATE = "python -m orchestrator.cli.reference > docs/cli.md"


def test_docs_cli_md_is_generated_from_the_commands() -> None:
    written = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")

    assert written == reference(cli), f"docs/cli.md is out of date; regenerate it: {REGENERATE}"


def test_the_reference_names_every_command_and_option() -> None:
    text = reference(cli)

    for heading in ("## `orch list`", "## `orch init`", "## `orch clean`", "## `orch cache gc`"):
        assert heading in text
    assert "| `-n, --dry-run` | Say what would be removed; remove nothing. |" in text
    assert "orch clean [OPTIONS] [PIPELINE] [TARGET]..." in text

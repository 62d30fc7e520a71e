"""The command line: version, validate and graph on valid pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import __version__
from orchestrator.cli.commands import cli

from .conftest import FIXTURES, ROOT


def test_version_through_click_matches() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.output == f"orch {__version__}\n"


def test_validate_reports_each_pipeline_and_its_step_count() -> None:
    files = [str(ROOT / "pipelines" / "notes_app.yaml"), str(FIXTURES / "full" / "pipeline.yaml")]
    result = CliRunner().invoke(cli, ["validate", *files])
    assert result.exit_code == 0
    assert result.output.splitlines() == [f"{files[0]}: ok (11 steps)", f"{files[1]}: ok (8 steps)"]


def test_validate_defaults_to_orch_yaml_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orch.yaml").write_text("version: 1\nsteps:\n  a: { run: 'true' }\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert (result.exit_code, result.output) == (0, "orch.yaml: ok (1 step)\n")


def test_missing_pipeline_file_exits_2_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["graph", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: no such pipeline file" in result.output


def test_set_overrides_reach_the_graph(tmp_path: Path) -> None:
    pipeline = tmp_path / "orch.yaml"
    pipeline.write_text(
        "version: 1\nvars: { n: a }\nsteps:\n"
        "  make: { run: x, output: '{{ n }}.txt' }\n  use: { run: x, inputs: [b.txt] }\n"
    )
    result = CliRunner().invoke(cli, ["graph", str(pipeline), "--set", "n=b"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["make", "use   <- make"]


def test_malformed_set_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["graph", str(tmp_path / "x.yaml"), "--set", "novalue"])
    assert result.exit_code == 2
    assert "--set expects NAME=VALUE" in result.output

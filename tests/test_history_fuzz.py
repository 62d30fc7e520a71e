"""`orch runs`, `orch show` and `orch tail` read run records back from disk, where anything may
have damaged them: whatever a manifest or an events line holds, they answer without a traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli.commands import cli

from .test_history import PRICED

PIPELINE = (
    PRICED
    + """\
  broken:
    needs: [ask]
    run: "exit 3"
"""
)
"""The priced shell and llm steps of the history tests, and a failure after them."""

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
COMMANDS = (
    ["runs"],
    ["runs", "--json"],
    ["show"],
    ["show", "--json"],
    ["tail"],
    ["tail", "--json"],
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir with one finished, failed run (a shell step, a priced llm step, a failure)."""
    root = tmp_path_factory.mktemp("history") / "work"
    root.mkdir()
    (root / "orch.yaml").write_text(PIPELINE)
    result = CliRunner().invoke(cli, ["build", str(root / "orch.yaml")])
    assert result.exit_code == 1, result.output
    return root


@pytest.fixture
def copy(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh copy of the built workdir for each example, removed afterwards: its damaged run
    is no record of a build (the session's end compares every run's manifest and events)."""
    target = tmp_path_factory.mktemp("copy") / "work"
    yield target
    shutil.rmtree(target, ignore_errors=True)


def _run_folder(workdir: Path) -> Path:
    (folder,) = (workdir / ".orch" / "runs").iterdir()
    return folder


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every position inside a JSON value (the root included)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replaced(value[head], tuple(rest), new)
    return copy


def _commands(workdir: Path) -> list[Result]:
    runner = CliRunner()
    return [runner.invoke(cli, [*args, "-C", str(workdir)]) for args in COMMANDS]


def _no_traceback(results: list[Result]) -> None:
    for result in results:
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{type(result.exception).__name__}: {result.exception}")
        assert "Traceback" not in result.output


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_value_anywhere_in_the_manifest(built: Path, copy: Path, data: st.DataObject) -> None:
    shutil.copytree(built, copy, dirs_exist_ok=True)
    manifest_file = _run_folder(copy) / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    where = data.draw(st.sampled_from(list(_paths(manifest))))
    manifest_file.write_text(json.dumps(_replaced(manifest, where, data.draw(JSON))))
    _no_traceback(_commands(copy))


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_value_anywhere_in_an_event(built: Path, copy: Path, data: st.DataObject) -> None:
    shutil.copytree(built, copy, dirs_exist_ok=True)
    folder = _run_folder(copy)
    (folder / "manifest.json").write_text(
        json.dumps({**json.loads((folder / "manifest.json").read_text()), "status": "running"})
    )  # a killed run: its manifest is rebuilt from the events
    events_file = folder / "events.jsonl"
    lines = events_file.read_text().splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    event = json.loads(lines[index])
    where = data.draw(st.sampled_from(list(_paths(event))))
    lines[index] = json.dumps(_replaced(event, where, data.draw(JSON)))
    events_file.write_text("\n".join(lines) + "\n")
    _no_traceback(_commands(copy))


def test_damaged_event_lines_are_skipped_with_a_warning(built: Path, copy: Path) -> None:
    shutil.copytree(built, copy, dirs_exist_ok=True)
    events_file = _run_folder(copy) / "events.jsonl"
    lines = events_file.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    lines.insert(2, '["not", "an", "event"]')
    events_file.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["tail", "-C", str(copy)])
    assert result.exit_code == 0
    assert "warning: skipped 2 damaged lines" in result.stderr
    assert len(result.stdout.splitlines()) == len(lines) - 2

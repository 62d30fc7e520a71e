"""The JSON Schema is generated from the models, kept in sync, and accepts the examples."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

import jsonschema
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from orchestrator.cli.commands import cli
from orchestrator.cli.schemas import schema_files, write_schemas

from .conftest import FIXTURES, ROOT

Json: TypeAlias = "str | int | float | bool | Sequence[Json] | Mapping[str, Json] | None"
"""A JSON value, as a validator takes it."""

EXAMPLES = sorted([*(ROOT / "pipelines").glob("*.yaml"), *FIXTURES.rglob("*.yaml")])


def test_schema_files_are_up_to_date() -> None:
    for relative, text in schema_files().items():
        committed = (ROOT / relative).read_text(encoding="utf-8")
        assert committed == text, f"{relative} is stale: run `orch schema --write`"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((ROOT / "schemas" / "pipeline.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_pipelines_validate_against_the_schema(
    validator: jsonschema.protocols.Validator, example: Path
) -> None:
    text = example.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=")
    schema_ref = text.splitlines()[0].split("$schema=", 1)[1]
    assert (example.parent / schema_ref).resolve() == ROOT / "schemas" / "pipeline.schema.json"
    validator.validate(YAML(typ="safe").load(text))


@pytest.mark.parametrize(
    "document",
    [
        {"version": 1, "steps": {"a": {"run": "x", "prompt": "y"}}},
        {"version": 1, "steps": {"a": {"description": "no kind"}}},
        {"version": 1, "steps": {"a": {"prompt": "x", "messages": []}}},
        {"version": 1, "steps": {"a": {"run": "x", "ouputs": []}}},
        {"version": 2, "steps": {"a": {"run": "x"}}},
        {"steps": {"a": {"run": "x"}}},
        {"version": 1, "providers": {"p": {"kind": "nope"}}, "steps": {"a": {"run": "x"}}},
    ],
)
def test_schema_rejects_what_the_loader_rejects(
    validator: jsonschema.protocols.Validator, document: Mapping[str, Json]
) -> None:
    assert not validator.is_valid(document)


def test_schema_command_prints_and_writes_the_same_schema(tmp_path: Path) -> None:
    printed = CliRunner().invoke(cli, ["schema"])
    assert printed.exit_code == 0
    written = write_schemas(tmp_path)
    assert written == [tmp_path / relative for relative in schema_files()]
    pipeline = tmp_path / "schemas" / "pipeline.schema.json"
    assert json.loads(printed.output) == json.loads(pipeline.read_text(encoding="utf-8"))
    assert write_schemas(tmp_path) == []

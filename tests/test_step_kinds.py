"""A step kind is one module and one registry line: a kind written here, added to the registry
as `kinds()` would list it, is validated, planned, keyed, run and rebuilt like the built-in ones,
and the language's messages and schema name it, with no other change to orch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from click.testing import CliRunner, Result

from orchestrator import steps
from orchestrator.cli.commands import cli
from orchestrator.cli.schemas import pipeline_schema
from orchestrator.language.spec import StepBase
from orchestrator.steps import Kind, Planning
from orchestrator.steps.base import Outcome, StepContext


class ShoutStep(StepBase):
    """Writes its text in capitals."""

    KEYS: ClassVar[tuple[str, ...]] = ("shout",)

    kind: Literal["shout"] = "shout"
    shout: str


def plan(step: Planning) -> tuple[dict[str, object], None]:
    assert isinstance(step.spec, ShoutStep)
    step.require_one_output()
    return {"shout": step.content(("shout",), step.spec.shout)}, None


async def execute(ctx: StepContext) -> Outcome:
    text = str(ctx.render(ctx.step.definition["shout"])).upper()
    return Outcome(written=[ctx.write(ctx.step.outputs[0], text)])


SHOUT = Kind(ShoutStep, plan=plan, execute=execute)


@pytest.fixture
def with_shout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry with one more line: `"shout": SHOUT`."""
    builtin = steps.kinds()
    monkeypatch.setattr(steps, "kinds", lambda: {**builtin, "shout": SHOUT})
    steps.language.cache_clear()
    yield
    steps.language.cache_clear()


def orch(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_a_new_kind_builds_caches_and_reruns_on_what_its_content_reads(
    with_shout: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "name.txt").write_text("world")
    (tmp_path / "orch.yaml").write_text(
        "version: 1\nsteps:\n  greet:\n    inputs: [name.txt]\n    output: out.txt\n"
        "    shout: \"hello {{ read('name.txt') }}\"\n"
    )
    first = orch("build")
    assert first.exit_code == 0, first.output
    assert (tmp_path / "out.txt").read_text() == "HELLO WORLD"
    assert orch("build").output == "all 1 step up to date\n"
    (tmp_path / "name.txt").write_text("you")
    assert orch("build").exit_code == 0
    assert (tmp_path / "out.txt").read_text() == "HELLO YOU"
    (tmp_path / "name.txt").write_text("world")
    restored = orch("build")
    assert "restored" in restored.output, restored.output
    assert (tmp_path / "out.txt").read_text() == "HELLO WORLD"


def test_the_language_names_a_new_kind_in_its_messages_and_schema(
    with_shout: None, tmp_path: Path
) -> None:
    pipeline = tmp_path / "orch.yaml"
    pipeline.write_text("version: 1\nsteps:\n  a: { output: a.txt, shuot: x }\n")
    result = orch("validate", str(pipeline))
    assert result.exit_code == 2
    assert "'shout' (shout)" in result.output
    assert "did you mean 'shout'?" in result.output
    assert "ShoutStep" in pipeline_schema()["$defs"]

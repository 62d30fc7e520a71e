"""A saved plan is reused only while everything it was compiled from is unchanged."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.commands import cli
from orchestrator.store.integrity import seal, unseal

from .buildkit import ran as ran_in
from .corruption import damaged

PIPELINE = """\
    version: 1
    dotenv: [.env]
    vars:
      word: hello
    steps:
      echo:
        foreach: "data/*.txt"
        inputs: ["{{ item }}"]
        run: "cat {{ item }} > out/{{ item | basename }}"
        output: "out/{{ item | basename }}"
      shout:
        run: "echo {{ word }} $GREETING {{ env.FROM_DOTENV }} > shout.txt"
        env:
          GREETING: "{{ env.GREETING | default('hi') }}"
        output: shout.txt
      page:
        inputs: [page.j2]
        template_file: page.j2
        output: page.txt
"""

FILES = {
    "data/a.txt": "a\n",
    ".env": "FROM_DOTENV=one\n",
    "page.j2": "Page for {{ word }}\n",
}


@pytest.fixture
def workdir(
    write_pipeline: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    (tmp_path / "out").mkdir()
    write_pipeline(PIPELINE, FILES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GREETING", raising=False)
    assert build().exit_code == 0
    assert list((tmp_path / ".orch" / "plans").glob("*.json")), "the build saved its plan"
    return tmp_path


def build(*args: str) -> Result:
    return CliRunner().invoke(cli, ["build", *args])


def ran(result: Result) -> list[str]:
    return ran_in(result.output)


def test_an_unchanged_pipeline_is_up_to_date_through_the_saved_plan(workdir: Path) -> None:
    result = build()
    assert result.exit_code == 0
    assert result.output == "all 3 steps up to date\n"


def test_editing_the_pipeline_compiles_it_again(workdir: Path) -> None:
    pipeline = workdir / "orch.yaml"
    pipeline.write_text(pipeline.read_text().replace("> shout.txt", ">> shout.txt"))
    assert ran(build()) == ["shout"]


def test_a_changed_environment_variable_reaches_the_step(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREETING", "hey")
    assert ran(build()) == ["shout"]
    assert (workdir / "shout.txt").read_text() == "hello hey one\n"


def test_a_variable_nothing_reads_keeps_the_saved_plan(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(workdir)
    saved = plan.stat().st_mtime_ns, plan.read_bytes()
    monkeypatch.setenv("CI_PIPELINE_ID", "12345")
    monkeypatch.setenv("PATH", os.environ["PATH"] + os.pathsep + str(workdir / "tools"))
    assert build().output == "all 3 steps up to date\n"
    assert (plan.stat().st_mtime_ns, plan.read_bytes()) == saved, "the plan was compiled again"


def test_a_variable_a_template_reads_compiles_the_plan_again(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(workdir)
    saved = plan.read_bytes()
    monkeypatch.setenv("FROM_DOTENV", "real")  # the real environment wins over the dotenv file
    assert ran(build()) == ["shout"]
    assert (workdir / "shout.txt").read_text() == "hello hi real\n"
    assert plan.read_bytes() != saved


@pytest.mark.parametrize("whole", ["env | length", "env.keys() | list | length"])
def test_a_template_reading_the_whole_environment_sees_any_change(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, whole: str
) -> None:
    pipeline = workdir / "orch.yaml"
    pipeline.write_text(pipeline.read_text().replace("word: hello", f'word: "{{{{ {whole} }}}}"'))
    monkeypatch.setenv("ONE_MORE", "x")
    first = build()
    assert ran(first) == ["shout", "page"], first.output
    monkeypatch.setenv("AND_ANOTHER", "y")
    assert ran(build()) == ["shout", "page"]
    monkeypatch.setenv("AND_ANOTHER", "z")  # the same count: the plan compiles, nothing runs
    assert build().output == "all 3 steps up to date\n"


def test_a_saved_plan_with_a_damaged_environment_record_is_compiled_afresh(
    workdir: Path,
) -> None:
    plan = _plan(workdir)
    data = plan.read_bytes()
    record = json.loads(unseal(data) or b"")
    record["reads"]["environ"] = ["GREETING"]
    plan.write_bytes(seal(json.dumps(record).encode()))
    assert build().output == "all 3 steps up to date\n"
    assert plan.read_bytes() == data, "the full load saved the plan again"


def test_a_changed_dotenv_file_is_seen(workdir: Path) -> None:
    (workdir / ".env").write_text("FROM_DOTENV=two\n")
    result = build()
    assert (workdir / "shout.txt").read_text() == "hello hi two\n", result.output


def test_set_values_are_part_of_the_plan(workdir: Path) -> None:
    assert sorted(ran(build("--set", "word=bye"))) == ["page", "shout"]
    assert (workdir / "page.txt").read_text() == "Page for bye\n"


def test_an_edited_template_file_rerenders(workdir: Path) -> None:
    (workdir / "page.j2").write_text("Another page for {{ word }}\n")
    assert ran(build()) == ["page"]
    assert (workdir / "page.txt").read_text() == "Another page for hello\n"


def test_a_file_new_to_a_foreach_glob_adds_a_step(workdir: Path) -> None:
    (workdir / "data" / "b.txt").write_text("b\n")
    assert ran(build()) == ["echo@data/b.txt"]
    assert (workdir / "out" / "b.txt").read_text() == "b\n"


def test_a_deleted_source_input_is_reported_where_it_is_declared(workdir: Path) -> None:
    (workdir / "page.j2").unlink()
    result = build()
    assert result.exit_code == 2
    assert "orch.yaml:" in result.output and "page.j2" in result.output
    assert "Traceback" not in result.output


def test_a_corrupt_saved_plan_is_ignored(workdir: Path) -> None:
    for plan in (workdir / ".orch" / "plans").glob("*.json"):
        plan.write_text('{"format": 1, "identity": ')
    result = build()
    assert result.exit_code == 0
    assert result.output == "all 3 steps up to date\n"


def test_a_fake_reply_file_that_appears_later_becomes_an_input(
    write_pipeline: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pipeline(
        """\
        version: 1
        providers: { offline: { kind: fake, responses: replies } }
        steps:
          ask: { prompt: question, output: answer.md }
        """
    )
    monkeypatch.chdir(tmp_path)
    first = build()
    assert first.exit_code == 1
    assert "create replies/ask.md" in first.output
    (tmp_path / "replies").mkdir()
    (tmp_path / "replies" / "ask.md").write_text("one\n")
    assert build().exit_code == 0
    (tmp_path / "replies" / "ask.md").write_text("two\n")
    second = build()
    assert ran(second) == ["ask"]
    assert "input modified: replies/ask.md" in second.output
    assert (tmp_path / "answer.md").read_text() == "two\n"


def _plan(workdir: Path) -> Path:
    """The saved plan, after a build that found everything up to date."""
    assert build().output == "all 3 steps up to date\n"
    (plan,) = (workdir / ".orch" / "plans").glob("*.json")
    return plan


def test_a_saved_plan_carries_a_checksum_of_its_bytes(workdir: Path) -> None:
    data = _plan(workdir).read_bytes()
    record = unseal(data)
    assert record is not None and json.loads(data)["record"] == json.loads(record)
    assert unseal(data.replace(b'"definition":"', b'"definition":"0', 1)) is None


def test_a_saved_plan_with_a_changed_digest_is_compiled_afresh(workdir: Path) -> None:
    plan = _plan(workdir)
    data = plan.read_bytes()
    at = data.index(b'"definition":"') + len(b'"definition":"')
    plan.write_bytes(data[:at] + (b"1" if data[at : at + 1] != b"1" else b"2") + data[at + 1 :])
    result = build()
    assert result.output == "all 3 steps up to date\n"  # not "definition changed"
    assert plan.read_bytes() == data, "the full load saved the plan again"


def test_saved_plans_cut_or_flipped_anywhere_are_never_used(workdir: Path) -> None:
    plan = _plan(workdir)
    data = plan.read_bytes()
    rng = random.Random(3)
    for _ in range(12):
        plan.write_bytes(damaged(data, rng))
        result = build()
        assert result.output == "all 3 steps up to date\n"
        assert plan.read_bytes() == data


def _redirect_an_output(step: dict[str, Any]) -> None:
    step["outputs"] = ["../outside.txt"]


FIELD_DAMAGE: dict[str, Callable[[dict[str, Any]], None]] = {
    "an output outside the workdir": _redirect_an_output,
    "a path not in canonical form": lambda step: step.update(outputs=["./shout.txt"]),
    "a step waiting for an unknown one": lambda step: step.update(preds=["nowhere"]),
    "a flag that is not a boolean": lambda step: step.update(always_run="yes"),
    "a default that is not a boolean": lambda step: step.update(default="no"),
    "a definition hash that is not a sha256": lambda step: step.update(definition="abc"),
    "an input that is not a string": lambda step: step.update(inputs=[7]),
    "a step id that is not a string": lambda step: step.update(id=["shout"]),
    "a missing kind": lambda step: step.pop("kind"),
    "expands that are not pairs": lambda step: step.update(expands=["data.txt"]),
    "an expands digest that is not a sha256": lambda step: step.update(
        expands=[["data.txt", "abc"]]
    ),
    "an expands path outside the workdir": lambda step: step.update(expands=[["../x", None]]),
    "a command that is not a mapping": lambda step: step.update(command="rm -rf ."),
    "a command whose env is not text": lambda step: step.update(
        command={"run": "true", "env": {"A": 1}, "cwd": None, "stdout": None, "timeout_s": None}
    ),
    "a command with a field too many": lambda step: step.update(
        command={"run": "true", "env": {}, "cwd": None, "stdout": None, "timeout_s": 1, "x": 1}
    ),
    "a command whose time limit is not positive": lambda step: step.update(
        command={"run": "true", "env": {}, "cwd": None, "stdout": None, "timeout_s": 0}
    ),
}


@pytest.mark.parametrize("damage", FIELD_DAMAGE.values(), ids=FIELD_DAMAGE.keys())
def test_a_sealed_plan_with_a_wrong_field_is_compiled_afresh(
    workdir: Path, damage: Callable[[dict[str, Any]], None]
) -> None:
    plan = _plan(workdir)
    data = plan.read_bytes()
    record = json.loads(unseal(data) or b"")
    (shout,) = [step for step in record["plan"]["steps"] if step["id"] == "shout"]
    damage(shout)
    plan.write_bytes(seal(json.dumps(record).encode()))
    assert build().output == "all 3 steps up to date\n"
    assert not (workdir.parent / "outside.txt").exists()
    assert plan.read_bytes() == data, "the full load saved the plan again"


@pytest.mark.parametrize(
    "removed",
    [{"shout": "if: x is false"}, {"gone": 5}, ["gone"]],
    ids=["a removed step also in the plan", "a reason that is not text", "not a mapping"],
)
def test_a_sealed_plan_with_wrong_removed_steps_is_compiled_afresh(
    workdir: Path, removed: Any
) -> None:
    plan = _plan(workdir)
    data = plan.read_bytes()
    record = json.loads(unseal(data) or b"")
    record["plan"]["removed"] = removed
    plan.write_bytes(seal(json.dumps(record).encode()))
    assert build().output == "all 3 steps up to date\n"
    assert plan.read_bytes() == data, "the full load saved the plan again"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deferred", {"later": ["nowhere"]}),
        ("deferred", {"later": "shout"}),
        ("unplannable", {"later": "a group that is not deferred"}),
        ("unplannable", {"later": 5}),
        ("waiters", {"later": ["shout"]}),
        ("remote", 5),
    ],
    ids=[
        "a deferred group waiting for an unknown step",
        "a deferred group's steps not a list",
        "an unplannable group that is not deferred",
        "an unplannable reason that is not text",
        "steps waiting for a group that is not deferred",
        "a remote cache that is not text",
    ],
)
def test_a_sealed_plan_with_wrong_deferred_groups_is_compiled_afresh(
    workdir: Path, field: str, value: Any
) -> None:
    plan = _plan(workdir)
    data = plan.read_bytes()
    record = json.loads(unseal(data) or b"")
    record["plan"][field] = value
    plan.write_bytes(seal(json.dumps(record).encode()))
    assert build().output == "all 3 steps up to date\n"
    assert plan.read_bytes() == data, "the full load saved the plan again"

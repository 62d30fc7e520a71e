"""`orch build --shard I/N`: N machines each build a share of the steps, sharing results through
the remote cache (a real S3 server on 127.0.0.1, moto in server mode), then a collecting build
restores everything. The llm steps talk to a loopback server that counts their calls."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from orchestrator.plan.compiled import Plan, PlannedStep
from orchestrator.plan.shards import Shard
from orchestrator.record.eventtypes import EventModel
from tests.llm_server import LlmServer

from .buildkit import Project, read_events
from .conftest import ROOT, SETTINGS_PREFIXES, keys

FILES = ["app.py", "cli.py", "db.py", "api.py", "ui.py", "docs.md"]
WORKFLOW = YAML(typ="safe").load(ROOT / "docs" / "ci" / "github-shards.yml")
STEPS = sorted(["architect", "collect", *(f"builder@{name}" for name in FILES)])
PIPELINE = """\
version: 1
providers:
  main: {{kind: openai, model: m1, base_url: "{url}"}}
steps:
  architect:
    prompt: "list the files of the app"
    output: files.json
  builder:
    foreach: {{ rows: "{{{{ steps.architect.output }}}}", key: name }}
    prompt: "write the file {{{{ item.name }}}}"
    output: "out/{{{{ item.name }}}}"
  collect:
    needs: [builder]
    inputs: ["out/"]
    output: all.txt
    run: cat out/* > all.txt
"""


def reply(fmt: str, body: dict[str, Any]) -> str:
    """The architect gets the list of files; a builder, its file's text."""
    text = json.dumps(body)
    if "list the files" in text:
        return json.dumps([{"name": name} for name in FILES])
    return "contents of " + next(name for name in FILES if f"file {name}" in text)


@pytest.fixture
def server() -> Iterator[LlmServer]:
    with LlmServer() as found:
        found.reply = reply
        yield found


@pytest.fixture
def workdirs(tmp_path: Path, server: LlmServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Makes checkouts of the pipeline at any path, with no orch setting from outside."""
    for variable in [v for v in os.environ if v.startswith(SETTINGS_PREFIXES)]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shard-test-do-not-leak")
    made: list[Project] = []

    def make(name: str) -> Project:
        project = Project(tmp_path / name)
        project.root.mkdir(parents=True)
        project.write("orch.yaml", PIPELINE.format(url=server.openai_url))
        made.append(project)
        return project

    yield make
    for project in made:
        project.cleanup()


def finished(project: Project, *args: str) -> list[dict[str, Any]]:
    """Run `orch build ARGS` as a process to its end; the events of its run."""
    before = project.run_folders()
    process = project.spawn("build", *args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    (run,) = project.run_folders() - before
    return read_events(run)


def ran(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["step"] for e in events if e["type"] == "step.started")


def outputs(project: Project) -> dict[str, str]:
    names = ["files.json", "all.txt", *(f"out/{name}" for name in FILES)]
    return {name: project.read(name) for name in names}


def workflow_commands(job: dict[str, Any], **values: Any) -> list[list[str]]:
    """The `orch` commands a job of the GitHub workflow runs, with `${{ name }}` filled in."""
    found = []
    for step in job["steps"]:
        command = step.get("run", "")
        for name, value in values.items():
            command = command.replace("${{ " + name + " }}", str(value))
        if command.startswith("orch "):
            assert "${{" not in command, command
            found.append(shlex.split(command)[1:])
    return found


@pytest.mark.slow
def test_the_shard_workflow_builds_each_llm_step_once_over_its_machines(
    workdirs: Any, server: LlmServer, bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as alone:
        alone.delenv("ORCH_REMOTE_CACHE")
        single = workdirs("single")
        assert ran(finished(single)) == STEPS
    calls = server.count
    assert calls == 1 + len(FILES)

    jobs, count = WORKFLOW["jobs"], WORKFLOW["env"]["SHARDS"]
    assert jobs["shard"]["strategy"]["matrix"]["shard"] == list(range(1, count + 1)) == [1, 2, 3]
    shards, processes = [], []
    for index in jobs["shard"]["strategy"]["matrix"]["shard"]:
        shard = workdirs(f"ci/runner-{index}/checkout")
        values = {"matrix.shard": index, "env.SHARDS": count}
        (args,) = workflow_commands(jobs["shard"], **values)
        shards.append(shard)
        processes.append(shard.spawn(*args))  # the matrix jobs run at once
    runs = []
    for project, process in zip(shards, processes, strict=True):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, out + err
        (run,) = project.run_folders()
        runs.append(read_events(run))

    assert server.count - calls == calls, "each llm step was called once over the three shards"
    bodies = [json.dumps(r.body) for r in server.requests[calls:]]
    assert len(set(bodies)) == len(bodies)
    per_shard = [ran(events) for events in runs]
    assert sorted(step for steps in per_shard for step in steps) == STEPS
    assert [sum(s.startswith("builder@") for s in steps) for steps in per_shard] == [2, 2, 2]
    assert [e["data"]["shard"] for e in (events[0] for events in runs)] == ["1/3", "2/3", "3/3"]
    waited = [e for events in runs for e in events if e["type"] == "cache.remote_wait"]
    assert waited, "the shards needed each other's steps"
    restored = [e for events in runs for e in events if e["type"] == "cache.remote_hit"]
    assert {e["step"] for e in waited} <= {e["step"] for e in restored}
    schema = json.loads((ROOT / "schemas" / "event.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for event in (e for events in runs for e in events):
        assert not list(validator.iter_errors(event)), event
        EventModel.model_validate(event)

    assert jobs["collect"]["needs"] == "shard"
    collector = workdirs("collector")
    (args,) = workflow_commands(jobs["collect"])
    assert ran(finished(collector, *args[1:])) == []
    assert outputs(collector) == outputs(single)
    assert server.count - calls == calls

    files = [p for p in collector.root.parent.rglob("*") if p.is_file()]
    stored = list(keys(bucket).values())
    for secret in (b"sk-shard-test-do-not-leak", b"test-secret-do-not-leak"):
        assert not [p for p in files if secret in p.read_bytes()], "a secret was written"
        assert not [data for data in stored if secret in data], "a secret was uploaded"


def test_in_the_workflow_only_main_writes_to_the_remote() -> None:
    assert WORKFLOW["on"]["push"] == {"branches": ["main"]}
    for name, job in WORKFLOW["jobs"].items():
        reads_only = job.get("env", {}).get("ORCH_REMOTE_CACHE_MODE") == "read"
        on_main = job.get("if") == "github.event_name == 'push'" or job.get("needs") == "shard"
        assert reads_only != on_main, name
    assert WORKFLOW["jobs"]["pull-request"]["if"] == "github.event_name == 'pull_request'"


def test_a_shard_builds_what_its_owner_did_not_upload_in_time(
    workdirs: Any, server: LlmServer, bucket: Any
) -> None:
    owner = Shard(1, 3).owner("architect", {})
    other = 1 if owner.index != 1 else 2
    events = finished(workdirs("alone"), "--shard", f"{other}/3", "--shard-wait", "0")
    assert "architect" in ran(events)
    (late,) = (e for e in events if e["type"] == "cache.miss" and e["step"] == "architect")
    assert late["data"]["reason"] == f"shard {owner} did not upload it within 0 s"


def test_a_forced_shard_runs_the_steps_it_needs_without_waiting(
    workdirs: Any, server: LlmServer, bucket: Any
) -> None:
    owner = Shard(1, 3).owner("architect", {})
    other = 1 if owner.index != 1 else 2
    events = finished(workdirs("forced"), "--shard", f"{other}/3", "-B")  # waits 600 s if wrong
    assert "architect" in ran(events)
    assert not [e for e in events if e["type"] == "cache.remote_wait"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--shard", "4/3"], "'4/3' is not a share: I/N needs 1 ≤ I ≤ N"),
        (["--shard", "two"], "'two' is not a share: expected I/N, such as 1/3"),
        (["--shard", "0/0"], "'0/0' is not a share"),
        (["--shard", "1/2", "--no-cache"], "--shard 1/2 cannot go with --no-cache"),
    ],
)
def test_a_bad_share_is_a_usage_error(
    workdirs: Any, bucket: Any, args: list[str], said: str
) -> None:
    project = workdirs("bad")
    process = project.spawn("build", *args)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, out + err
    assert said in err
    assert "Traceback" not in err
    assert not (project.root / ".orch" / "runs").exists()


def test_a_shard_needs_a_remote_it_can_write(
    workdirs: Any, bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = workdirs("read-only")
    monkeypatch.setenv("ORCH_REMOTE_CACHE_MODE", "read")
    process = project.spawn("build", "--shard", "1/2")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, out + err
    assert "a remote cache they can write" in err
    monkeypatch.delenv("ORCH_REMOTE_CACHE")
    monkeypatch.delenv("ORCH_REMOTE_CACHE_MODE")
    process = project.spawn("build", "--shard", "1/2")
    assert process.wait(timeout=60) == 2


# ---------------------------------------------------------------------- the shares


def plan_of(groups: dict[str, int], plain: list[str]) -> Plan:
    """A plan of independent steps: the members of each group (`name@i`) and the plain ones."""
    members = {name: tuple(f"{name}@{i}" for i in range(size)) for name, size in groups.items()}
    ids = [*plain, *(m for ms in members.values() for m in ms)]
    steps = {i: PlannedStep(i, "shell", (), (f"{i}.out",), (), "0" * 64) for i in ids}
    return Plan("orch.yaml", "p", ".", steps, members)


@settings(max_examples=200, deadline=None)
@given(
    groups=st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 30), max_size=4),
    plain=st.lists(st.sampled_from([f"s{i}" for i in range(20)]), unique=True, max_size=12),
    count=st.integers(1, 7),
)
def test_the_shares_cover_every_step_once_and_split_groups_evenly(
    groups: dict[str, int], plain: list[str], count: int
) -> None:
    plan = plan_of(groups, plain)
    selected = list(plan.steps)
    shares = [Shard(i, count).take(plan, selected) for i in range(1, count + 1)]
    assert sorted(s for share in shares for s in share.steps) == sorted(selected)
    for name, size in groups.items():
        sizes = [sum(s.startswith(f"{name}@") for s in share.steps) for share in shares]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == size
    again = [Shard(i, count).take(plan, selected) for i in range(1, count + 1)]
    assert again == shares, "the same shares every time"


def test_a_shard_takes_what_its_steps_need_as_foreign() -> None:
    steps = {
        "a": PlannedStep("a", "shell", (), ("a.out",), (), "0" * 64),
        **{
            f"g@{i}": PlannedStep(f"g@{i}", "shell", ("a.out",), (f"{i}.out",), ("a",), "0" * 64)
            for i in range(4)
        },
    }
    plan = Plan("orch.yaml", "p", ".", steps, {"g": tuple(f"g@{i}" for i in range(4))})
    owner = Shard(1, 2).owner("a", {})
    other = Shard(3 - owner.index, 2)
    taken = other.take(plan, list(steps))
    assert taken.steps[0] == "a" and taken.foreign == {"a": owner}
    assert len(taken.steps) == 3


def test_a_dry_run_shows_the_share(project: Project) -> None:
    project.pipeline(
        """
version: 1
steps:
  page:
    foreach: [a, b, c, d, e, f]
    output: "out/{{ item }}.txt"
    run: echo {{ item }} > {{ outputs[0] }}
"""
    )
    shares = []
    for index in (1, 2, 3):
        dry = project.orch("build", "--shard", f"{index}/3", "--dry-run")
        assert dry.exit_code == 0, dry.stdout + dry.stderr
        assert dry.lines[-1] == "dry run: 2 of 2 steps would change"
        shares.append([line.split()[1] for line in dry.lines[:-1]])
    assert sorted(step for share in shares for step in share) == [f"page@{c}" for c in "abcdef"]
    assert not (project.root / "out").exists()

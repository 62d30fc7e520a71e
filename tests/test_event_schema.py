"""`schemas/event.schema.json` describes every event orch writes, and rejects what it should not.

A handful of real builds (shell, template and llm steps on the fake provider and on the loopback
HTTP server, with a retry, cache hits and restores, a hand edit kept, a stale file removed, a
circuit breaker that opens and closes, and failures) produce the events; each line of each
`events.jsonl` must validate against the committed schema with the `jsonschema` library and
against the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest

from orchestrator.engine.outputs import KeptReason
from orchestrator.providers.base import KINDS, RETRYABLE
from orchestrator.record.eventtypes import (
    EVENT_MODELS,
    EventModel,
    FailureKind,
    FileKeptData,
    RetryKind,
)

from .buildkit import RUNS, Build, Project, read_events
from .conftest import ROOT
from .llm_server import LlmServer, echo_reply, status

SCHEMA_FILE = ROOT / "schemas" / "event.schema.json"
BATCH = "exercised and validated by test_batch (needs --batch builds)"
NOT_EXERCISED = {
    "job.cancelled": "needs a signal (see test_build and test_providers)",
    "llm.batch.submitted": BATCH,
    "llm.batch.resumed": BATCH,
    "llm.batch.ended": BATCH,
    "llm.batch.fallback": BATCH,
    "llm.batch.ignored": BATCH,
    "cache.remote_skipped": "needs a remote cache: test_remote_cache checks it against the schema",
    "cache.remote_hit": "needs a remote cache: test_remote_cache checks it against the schema",
    "cache.remote_wait": "needs --shard and a remote: test_shards checks it against the schema",
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def type_literals(model: type[Any]) -> tuple[str, ...]:
    """The `type` values an envelope model stands for."""
    return get_args(model.model_fields["type"].annotation)


def all_types() -> set[str]:
    return {name for model in EVENT_MODELS for name in type_literals(model)}


# --------------------------------------------------------------------------- the builds


def files_reply(*names: str) -> str:
    return "\n\n".join(f"```text gen/{name}\n{name} body\n```" for name in names) + "\n"


def pipeline(server: LlmServer) -> dict[str, Any]:
    http = {"kind": "openai", "base_url": server.openai_url}
    providers = {
        "offline": {"kind": "fake", "responses": "replies"},
        "local": {**http, "model": "m1", "max_retries": 2, "price": {"input": 1, "output": 2}},
        "down": {**http, "base_url": "http://127.0.0.1:9", "model": "m0", "max_retries": 0},
        "fragile": {
            **http,
            "model": "m-cb",
            "max_retries": 0,
            "cb_min_calls": 1,
            "cb_cooldown_s": 0.001,
        },
    }
    steps = {
        "data": {"run": "printf 'buy milk\\n' > data.txt", "output": "data.txt"},
        "page": {
            "inputs": ["data.txt"],
            "template": "Notes: {{ read('data.txt') }}",
            "output": "out/page.txt",
        },
        "summary": {"provider": "offline", "prompt": "summarise", "output": "out/summary.md"},
        "gen": {
            "provider": "offline",
            "prompt": "make files",
            "extract": "files",
            "outputs": ["gen/"],
        },
        "ask": {"provider": "local", "prompt": "MARK-ask a question", "output": "out/ask.md"},
        # its first provider cannot be reached: the second answers
        "spare": {"provider": ["down", "local"], "prompt": "MARK-spare", "output": "out/spare.md"},
        # its first reply is not JSON: one repair call follows
        "fix": {
            "provider": "local",
            "prompt": "MARK-fix give JSON",
            "extract": "json",
            "output": "out/fix.json",
        },
        # planned from another step's output, once it is written
        "plan": {"run": """printf '[{"n": "x"}]' > list.json""", "output": "list.json"},
        "each": {
            "foreach": {"rows": "{{ steps.plan.output }}", "key": "n"},
            "run": "echo {{ item.n }} > each-{{ item.n }}.txt",
            "output": "each-{{ item.n }}.txt",
        },
        "badplan": {"run": "echo '[1' > bad.json", "output": "bad.json"},
        "badeach": {
            "foreach": {"rows": "{{ steps.badplan.output }}"},
            "run": "echo {{ item }}",
        },
        # the failure targets
        "bad": {"provider": "fragile", "prompt": "MARK-bad", "output": "out/bad.md"},
        "pause": {"run": "true > pause.txt", "output": "pause.txt"},
        "good": {
            "provider": "fragile",
            "prompt": "MARK-good",
            "output": "out/good.md",
            "needs": ["pause"],
        },
        "boom": {"run": "exit 3", "output": "boom.txt"},
        "after": {"run": "cat boom.txt > after.txt", "output": "after.txt", "needs": ["boom"]},
        # writes over an output of a step that is done
        "clobber": {"run": "printf x > pause.txt && : > clobber.txt", "output": "clobber.txt"},
        # leaves the lock file unwritable: the last build
        "breaklock": {
            "run": "rm orch.lock && mkdir orch.lock && : > broke.txt",
            "output": "broke.txt",
        },
    }
    return {"version": 1, "providers": providers, "steps": steps}


MAIN = ("data", "page", "summary", "gen", "ask", "fix", "spare")
FAILING = ("bad", "pause", "good", "boom", "after", "clobber")


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def repaired_json(fmt: str, body: dict[str, Any]) -> str:
    """Not JSON, unless the request asks for a repair."""
    asked = str(body["messages"][-1]["content"])
    return '{"fixed": true}' if "could not be used" in asked else echo_reply(fmt, body)


def run_every_kind_of_event(project: Project, server: LlmServer) -> None:
    """Builds whose events cover every type but `job.cancelled`."""
    project.pipeline(json.dumps(pipeline(server), indent=2))
    project.write("replies/summary.md", "A summary.\n")
    project.write("replies/gen.md", files_reply("a.txt", "b.txt"))
    server.script_for("MARK-ask", status(503, {"retry-after-ms": "1"}))
    server.reply = repaired_json

    first = ok(project.orch("build", *MAIN))
    assert first.statuses() == dict.fromkeys(MAIN, "ran")
    assert [e["data"]["kind"] for e in first.events("llm.retry", "ask")] == ["server"]
    assert [e["data"]["reason"] for e in first.events("llm.followup", "fix")] == ["repair"]
    assert [e["data"]["to"] for e in first.events("llm.fallback", "spare")] == ["local"]

    assert ok(project.orch("build", *MAIN)).unchanged

    project.write("out/summary.md", "edited by hand\n")
    restored = ok(project.orch("build", *MAIN))
    assert restored.statuses()["summary"] == "restored"
    assert [e["data"]["path"] for e in restored.events("file.kept")] == ["out/summary.md"]

    project.write("replies/gen.md", files_reply("a.txt"))
    again = ok(project.orch("build", "gen"))
    assert [e["data"]["path"] for e in again.events("file.removed", "gen")] == ["gen/b.txt"]

    planned = ok(project.orch("build", "each"))
    assert [e["data"]["selected"] for e in planned.events("job.replanned")] == [["each@x"]]

    unplannable = project.orch("build", "badeach")
    assert unplannable.exit_code == 1, unplannable.stdout + unplannable.stderr
    assert len(unplannable.events("plan.failed")) == 1

    server.script_for("MARK-bad", status(500), status(500))
    failing = project.orch("build", "-k", "-j", "1", *FAILING)
    assert failing.exit_code == 1, failing.stdout + failing.stderr
    assert failing.statuses() == {
        "bad": "failed",
        "pause": "ran",
        "good": "ran",
        "boom": "failed",
        "after": "blocked",
        "clobber": "ran",
    }
    assert [e["step"] for e in failing.events("circuit.opened")] == ["bad"]
    assert [e["step"] for e in failing.events("circuit.closed")] == ["good"]
    [undeclared] = failing.events("file.undeclared_write")
    assert (undeclared["step"], undeclared["data"]["owner"]) == ("clobber", "pause")

    broken = project.orch("build", "breaklock")
    assert broken.exit_code == 1, broken.stdout + broken.stderr
    assert len(broken.events("lock.failed")) == 1


def event_lines(root: Path) -> list[dict[str, Any]]:
    """Every event of every run under `root`."""
    runs = sorted(run for run in (root / RUNS).iterdir() if run.is_dir())
    assert runs
    return [event for run in runs for event in read_events(run)]


# --------------------------------------------------------------------------- tests


def test_every_emitted_event_validates_and_the_builds_cover_every_type(
    project: Project, llm_server: LlmServer, validator: jsonschema.protocols.Validator
) -> None:
    run_every_kind_of_event(project, llm_server)

    events = event_lines(project.root)
    for event in events:
        errors = sorted(validator.iter_errors(event), key=str)
        assert not errors, f"{json.dumps(event)}\n{errors[0]}"
        EventModel.model_validate(event)
    seen = {event["type"] for event in events}
    assert seen <= all_types()
    assert all_types() - seen == set(NOT_EXERCISED)
    # both shapes of step.succeeded's data, and the optional fields, were exercised
    succeeded = {e["step"]: e["data"] for e in events if e["type"] == "step.succeeded"}
    assert set(succeeded["data"]) == {"duration_s", "outputs"}
    assert {"provider", "calls", "tokens", "cost"} <= set(succeeded["ask"])
    assert "cost" not in succeeded["summary"]


def test_each_type_has_one_model_and_the_discriminator_maps_every_type() -> None:
    literals = [name for model in EVENT_MODELS for name in type_literals(model)]
    assert len(literals) == len(set(literals))
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["discriminator"]["propertyName"] == "type"
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == set(literals)
    for model in EVENT_MODELS:
        for name in type_literals(model):
            assert mapping[name] == f"#/$defs/{model.__name__}"
    assert {entry["$ref"] for entry in schema["oneOf"]} == set(mapping.values())


def test_the_models_name_every_kind_and_reason_the_code_emits() -> None:
    assert set(KINDS) <= set(get_args(FailureKind))
    assert set(get_args(RetryKind)) == RETRYABLE
    kept = FileKeptData.model_fields["reason"].annotation
    assert get_args(kept) == get_args(KeptReason)


GOOD: dict[str, Any] = {
    "ts": "2026-11-24T10:15:00.123Z",
    "level": "error",
    "job_id": "20261124T101500Z-abc123",
    "type": "step.failed",
    "step": "a",
    "data": {"kind": "exit", "message": "exited with code 3", "duration_s": 0.5},
}


def changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """GOOD with the field at `path` set to `value` (removed when value is ...)."""
    event: dict[str, Any] = json.loads(json.dumps(GOOD))
    *parents, last = path
    target = event
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return event


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", "kind"), ...),
        (("data", "kind"), "exploded"),
        (("data", "extra"), 1),
        (("ts",), "2026-11-24T10:15:00.123"),
        (("ts",), "2026-11-24T10:15:00Z"),
        (("ts",), "2026-11-24T10:15:00.123+00:00"),
        (("level",), "fatal"),
        (("step",), None),
        (("type",), "step.exploded"),
        (("job_id",), ...),
        (("other",), 1),
    ],
    ids=str,
)
def test_a_wrong_event_does_not_validate(
    validator: jsonschema.protocols.Validator, path: tuple[str, ...], value: Any
) -> None:
    assert validator.is_valid(GOOD)
    assert not validator.is_valid(changed(path, value))


RETRY: dict[str, Any] = {"provider": "p", "model": None, "attempt": 1, "kind": "server"}
RETRY |= {"message": "HTTP 503", "wait_s": 0.5}
FINISHED: dict[str, Any] = {"duration_s": 1.5, "counts": {"ran": 1}, "pending_steps": []}
ENVELOPE = {key: GOOD[key] for key in ("ts", "level", "job_id")}


@pytest.mark.parametrize(
    "event",
    [
        {"type": "job.started", "step": "a", "data": {"pipeline": "p", "name": "n", "steps": 1}},
        {"type": "step.skipped", "step": "a", "data": {"reason": "blocked"}},
        {"type": "step.skipped", "step": "a", "data": {"reason": "up-to-date", "upstream": "b"}},
        {"type": "step.succeeded", "step": "a", "data": {"duration_s": 1, "provider": "p"}},
        {"type": "cache.miss", "step": "a", "data": {"key": "x" * 64}},
        {"type": "llm.retry", "step": "a", "data": {**RETRY, "kind": "client"}},
        {"type": "llm.retry", "step": "a", "data": {**RETRY, "attempt": 0}},
        {"type": "job.failed", "step": None, "data": {**FINISHED, "counts": {"running": 1}}},
        {"type": "job.failed", "step": "a", "data": FINISHED},
        {"type": "lock.failed", "step": None, "data": {}},
    ],
    ids=lambda event: event["type"],
)
def test_a_payload_that_does_not_fit_its_type_does_not_validate(
    validator: jsonschema.protocols.Validator, event: dict[str, Any]
) -> None:
    assert not validator.is_valid({**ENVELOPE, **event})


def test_the_payloads_those_are_made_from_validate(
    validator: jsonschema.protocols.Validator,
) -> None:
    retry = {**ENVELOPE, "type": "llm.retry", "step": "a", "data": RETRY}
    finished = {**ENVELOPE, "type": "job.failed", "step": None, "data": FINISHED}
    assert validator.is_valid(retry)
    assert validator.is_valid(finished)

"""`orch build --batch`: llm steps go through the providers' batch APIs, polled until they end;
a build killed while it waits resumes the same batch; a failed request fails just its step; a
refused submission falls back to normal calls; a damaged record is ignored with a warning."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.record.eventtypes import EventModel

from .buildkit import Build, Project, wait_for
from .llm_server import LlmServer
from .test_providers import failed, failure, ok, provider, write_orch

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "event.schema.json"
RECORDS = Path(".orch/batches")
STEPS = ("s0", "s1", "s2")


@pytest.fixture(autouse=True)
def quick_batches(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll often and gather calls briefly, so the tests wait little."""
    monkeypatch.setenv("ORCH_BATCH_POLL_S", "0.01")
    monkeypatch.setenv("ORCH_BATCH_WINDOW_S", "0.2")


def pipeline(project: Project, server: LlmServer, kind: str = "openai", **settings: Any) -> None:
    options = {"max_tokens": 50} if kind == "anthropic" else {}
    steps = {name: {"prompt": f"MARK-{name} hello", "output": f"out/{name}.md"} for name in STEPS}
    write_orch(project, steps, {"p": provider(server, kind, options=options, **settings)})


def batch(project: Project, *args: str) -> Build:
    return project.orch("build", "--batch", "-j", str(len(STEPS)), *args)


def chat_calls(server: LlmServer) -> int:
    return server.count_path("POST", "/v1/chat/completions") + server.count_path(
        "POST", "/v1/messages"
    )


def submissions(server: LlmServer) -> int:
    return server.count_path("POST", "/v1/batches") + server.count_path(
        "POST", "/v1/messages/batches"
    )


def records(project: Project) -> list[Path]:
    folder = project.root / RECORDS
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def valid_events(build: Build) -> None:
    """Every event of the build validates against the event schema (the batch ones too)."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    for event in build.events():
        assert not list(validator.iter_errors(event)), event
        EventModel.model_validate(event)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_the_steps_go_as_one_batch_and_their_outputs_are_written(
    project: Project, llm_server: LlmServer, kind: str
) -> None:
    llm_server.batch_polls = 3
    pipeline(project, llm_server, kind, price={"input": 2.0, "output": 2.0})
    build = ok(batch(project))
    assert submissions(llm_server) == 1
    assert llm_server.count_path("POST", "/v1/files") == (1 if kind == "openai" else 0)
    assert chat_calls(llm_server) == 0
    for name in STEPS:
        assert project.read(f"out/{name}.md") == f"echo: MARK-{name} hello"
    steps = build.manifest()["steps"]
    batch_ids = {steps[name]["meta"]["batch"] for name in STEPS}
    assert len(batch_ids) == 1
    (submitted,) = {e["data"]["requests"] for e in build.events("llm.batch.submitted")}
    assert submitted == len(STEPS)
    (ended,) = build.events("llm.batch.ended", "s0")
    assert ended["data"]["status"] == ("completed" if kind == "openai" else "ended")
    assert (ended["data"]["succeeded"], ended["data"]["failed"]) == (len(STEPS), 0)
    tokens = steps["s0"]["meta"]["tokens"]
    full = (tokens["input"] + tokens["output"]) * 2.0 / 1_000_000
    assert steps["s0"]["meta"]["cost"] == pytest.approx(full / 2), "a batch costs half"
    assert records(project) == [], "the record goes once its results are read"
    assert "submitted in batch" in (build.run / "logs" / "s0.log").read_text()  # type: ignore[operator]
    valid_events(build)
    assert ok(project.orch("build", "--batch")).unchanged


def killed_while_waiting(project: Project, server: LlmServer) -> dict[str, Any]:
    """Start a build whose batch does not end, kill it once it recorded the batch; the record."""
    server.batch_polls = 10**9
    pipeline(project, server)
    process = project.spawn("build", "--batch", "-j", str(len(STEPS)))

    def recorded() -> list[Path] | None:
        assert process.poll() is None, process.communicate()
        return records(project) or None

    (record,) = wait_for(recorded, what="a batch record")
    saved: dict[str, Any] = json.loads(record.read_text())
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return saved


def test_a_build_killed_while_it_waits_resumes_the_same_batch(
    project: Project, llm_server: LlmServer
) -> None:
    saved = killed_while_waiting(project, llm_server)
    assert {s for entry in saved["requests"].values() for s in entry["steps"]} == set(STEPS)
    waiting = project.orch("status").stdout
    assert f"batched  s0  (batch {saved['batch_id']}, submitted" in waiting
    listed = json.loads(project.orch("status", "--json").stdout)["batched"]
    assert {(entry["step"], entry["batch"]) for entry in listed} == {
        (step, saved["batch_id"]) for step in STEPS
    }
    assert submissions(llm_server) == 1

    llm_server.batch_polls = 1
    build = ok(batch(project))
    assert submissions(llm_server) == 1, "no second submission"
    assert chat_calls(llm_server) == 0
    resumed = {e["data"]["batch_id"] for e in build.events("llm.batch.resumed")}
    assert resumed == {saved["batch_id"]}
    assert {r["meta"]["batch"] for r in build.manifest()["steps"].values()} == resumed
    for name in STEPS:
        assert project.read(f"out/{name}.md") == f"echo: MARK-{name} hello"
    assert records(project) == []
    valid_events(build)


def test_a_recorded_batch_the_api_no_longer_knows_fails_its_steps_once(
    project: Project, llm_server: LlmServer
) -> None:
    saved = killed_while_waiting(project, llm_server)
    llm_server.batches.batches.clear()  # the server forgot it: polls get a 404
    build = failed(batch(project, "-k"))
    assert {failure(build, name)["kind"] for name in STEPS} == {"client"}
    assert records(project) == [], "a batch the API does not know is not polled again"
    llm_server.batch_polls = 1
    again = ok(batch(project))
    assert submissions(llm_server) == 2
    assert {r["meta"]["batch"] for r in again.manifest()["steps"].values()} != {saved["batch_id"]}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_request_that_errors_fails_just_its_step_and_the_next_build_runs_it(
    project: Project, llm_server: LlmServer, kind: str
) -> None:
    llm_server.batch_fail("MARK-s1")
    pipeline(project, llm_server, kind)
    build = failed(batch(project, "-k"))
    assert build.statuses() == {"s0": "ran", "s1": "failed", "s2": "ran"}
    assert failure(build, "s1")["kind"] == "server"
    llm_server.reset()
    again = ok(project.orch("build"))
    assert again.statuses() == {"s0": "up-to-date", "s1": "ran", "s2": "up-to-date"}
    assert chat_calls(llm_server) == 1


def test_a_refused_submission_falls_back_to_normal_calls(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.batch_refuse(400)
    pipeline(project, llm_server)
    build = ok(batch(project))
    assert chat_calls(llm_server) == len(STEPS)
    assert submissions(llm_server) == 0
    reasons = {e["data"]["reason"] for e in build.events("llm.batch.fallback")}
    assert reasons == {"refused"}
    assert "batch" not in build.manifest()["steps"]["s0"]["meta"]
    assert records(project) == []
    valid_events(build)


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        json.dumps({"version": 1, "provider": "p", "kind": "openai", "batch_id": "../x"}),
        json.dumps([1, 2]),
    ],
)
def test_a_damaged_record_is_ignored_with_a_warning_and_the_requests_submitted_anew(
    project: Project, llm_server: LlmServer, damage: str
) -> None:
    pipeline(project, llm_server)
    project.write(".orch/batches/0123.json", damage)
    build = ok(batch(project))
    assert "Traceback" not in build.stderr
    (ignored,) = build.events("llm.batch.ignored")
    assert ignored["level"] == "warning"
    assert ignored["data"]["record"] == "0123.json"
    assert submissions(llm_server) == 1
    assert records(project) == []
    valid_events(build)


def test_a_fake_provider_with_batch_takes_the_normal_path_offline(project: Project) -> None:
    steps = {"s": {"prompt": "hi", "output": "out/s.md"}}
    write_orch(project, steps, {"f": {"kind": "fake", "echo": True}})
    build = ok(project.orch("build", "--batch", "--offline"))
    (note,) = build.events("llm.batch.fallback", "s")
    assert note["data"]["reason"] == "unsupported"
    assert project.exists("out/s.md")
    valid_events(build)


def test_a_poll_interval_that_is_not_a_positive_number_is_a_usage_error(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_BATCH_POLL_S", "soon")
    pipeline(project, llm_server)
    build = batch(project)
    assert build.exit_code == 2
    assert "ORCH_BATCH_POLL_S='soon': expected a number above 0" in build.stderr
    assert build.run is None
    assert llm_server.count == 0


def test_every_ready_step_joins_the_batch_whatever_j_is(
    project: Project, llm_server: LlmServer
) -> None:
    pipeline(project, llm_server)
    build = ok(project.orch("build", "--batch", "-j", "1"))
    assert submissions(llm_server) == 1, "the steps wait on the batch, not on a job slot"
    assert chat_calls(llm_server) == 0
    submitted = build.events("llm.batch.submitted")
    assert {event["data"]["requests"] for event in submitted} == {len(STEPS)}

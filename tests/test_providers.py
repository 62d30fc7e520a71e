"""llm steps end to end against a real HTTP server on 127.0.0.1 (`tests/llm_server.py`).

Each test writes a pipeline whose providers point at the server, runs `orch build` in-process
through click's CliRunner (`buildkit.Project.orch`) and checks what a user would notice: the
outputs, the exit code, the events and manifest of the run, the step logs, and what the server
saw. Pipelines are written as JSON, which is YAML too, so the server's address and settings drop
in without quoting worries. Retry settings are kept small so the whole file stays fast.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .buildkit import Build, Event, Project, ran
from .llm_server import (
    DROP,
    EMPTY_CHOICES,
    MALFORMED,
    OLLAMA_ERROR,
    Fault,
    LlmServer,
    rate_limited,
    rate_limited_ms,
    rate_limited_until,
    slow,
    status,
)

ISO_SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
FIRST_BACKOFF = (0.25, 0.5)  # our own first wait: 0.5 s with jitter down to half


# --------------------------------------------------------------------------- helpers


def provider(server: LlmServer, kind: str = "openai", **settings: Any) -> dict[str, Any]:
    """A provider of `kind` pointed at the test server (model `m1` unless given)."""
    url = server.openai_url if kind == "openai" else server.url
    return {"kind": kind, "model": "m1", "base_url": url, **settings}


def write_orch(
    project: Project,
    steps: dict[str, dict[str, Any]],
    providers: dict[str, dict[str, Any]],
    **top: Any,
) -> None:
    project.pipeline(
        json.dumps({"version": 1, "providers": providers, "steps": steps, **top}, indent=2)
    )


def llm(prompt: str, output: str, **fields: Any) -> dict[str, Any]:
    return {"prompt": prompt, "output": output, **fields}


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def failed(build: Build) -> Build:
    assert build.exit_code == 1, build.stdout + build.stderr
    return build


def failure(build: Build, step: str) -> dict[str, str]:
    """The manifest's failure record of `step`, which must also be its step.failed event."""
    found: dict[str, str]
    (found,) = [f for f in build.manifest()["failures"] if f["step"] == step]
    (event,) = build.events("step.failed", step)
    assert event["data"]["kind"] == found["kind"]
    assert event["data"]["message"] == found["message"]
    return found


def retries(build: Build, step: str | None = None) -> list[tuple[int, str]]:
    """(attempt, kind) of each llm.retry event."""
    return [(e["data"]["attempt"], e["data"]["kind"]) for e in build.events("llm.retry", step)]


def log_of(build: Build, step: str) -> str:
    assert build.run is not None
    return (build.run / "logs" / f"{step}.log").read_text(encoding="utf-8")


def types(events: list[Event]) -> list[str]:
    return [event["type"] for event in events]


# --------------------------------------------------------------------------- wire formats


def test_openai_wire_format_end_to_end(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wire-test")
    llm_server.reply = "reply via openai"
    write_orch(
        project,
        {"a": llm("say a", "out/a.md", system="Be brief.")},
        {"local": provider(llm_server, options={"temperature": 0})},
    )
    build = ok(project.orch("build"))

    assert project.read("out/a.md") == "reply via openai"
    (request,) = llm_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-wire-test"
    assert request.body is not None
    assert request.body["model"] == "m1"
    assert request.body["temperature"] == 0
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "say a"},
    ]
    meta = build.manifest()["steps"]["a"]["meta"]
    assert meta["provider"] == "local"
    assert meta["model"] == "m1"
    assert meta["calls"] == 1
    assert meta["tokens"] == {"input": 4, "output": 3, "cached": 0}
    log = log_of(build, "a")
    assert "Be brief." in log
    assert "say a" in log
    assert "reply via openai" in log
    (response,) = build.events("llm.response", "a")
    assert response["data"]["tokens"] == {"input": 4, "output": 3, "cached": 0}
    assert response["data"]["finish_reason"] == "stop"


def test_anthropic_wire_format_end_to_end(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wire-test")
    llm_server.reply = lambda fmt, body: f"reply via {fmt}"
    write_orch(
        project,
        {"a": llm("say a", "out/a.md", system="Be brief.")},
        {"claude": provider(llm_server, "anthropic")},
    )
    build = ok(project.orch("build"))

    assert project.read("out/a.md") == "reply via anthropic"
    (request,) = llm_server.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-wire-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.body is not None
    assert request.body["system"] == "Be brief."
    assert request.body["messages"] == [{"role": "user", "content": "say a"}]
    assert isinstance(request.body["max_tokens"], int)
    assert request.body["max_tokens"] > 0
    meta = build.manifest()["steps"]["a"]["meta"]
    assert (meta["provider"], meta["model"]) == ("claude", "m1")
    assert meta["tokens"] == {"input": 4, "output": 3, "cached": 0}
    log = log_of(build, "a")
    assert "Be brief." in log
    assert "say a" in log
    assert "reply via anthropic" in log


def test_ollama_native_wire_format_end_to_end(project: Project, llm_server: LlmServer) -> None:
    llm_server.reply = lambda fmt, body: f"reply via {fmt}"
    options = {"temperature": 0.2, "num_ctx": 2048, "keep_alive": "5m"}
    write_orch(
        project,
        {"a": llm("say a", "out/a.md", system="Be brief.")},
        {"llama": provider(llm_server, "ollama", options=options)},
    )
    build = ok(project.orch("build"))

    assert project.read("out/a.md") == "reply via ollama"
    (request,) = llm_server.requests
    assert request.path == "/api/chat"
    assert request.body is not None
    assert request.body["stream"] is False
    assert request.body["options"] == {"temperature": 0.2, "num_ctx": 2048}
    assert request.body["keep_alive"] == "5m"
    assert "temperature" not in request.body
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "say a"},
    ]
    meta = build.manifest()["steps"]["a"]["meta"]
    assert (meta["provider"], meta["model"]) == ("llama", "m1")
    assert meta["tokens"] == {"input": 4, "output": 3, "cached": 0}
    log = log_of(build, "a")
    assert "say a" in log
    assert "reply via ollama" in log


def test_the_prompt_reaches_the_model_with_its_inputs_read_and_the_log_holds_it(
    project: Project, llm_server: LlmServer
) -> None:
    project.write("notes.txt", "buy milk\n")
    step = llm("Summarise: {{ read('notes.txt') }}", "out/s.md", inputs=["notes.txt"])
    write_orch(project, {"s": step}, {"p": provider(llm_server)})
    build = ok(project.orch("build"))
    assert llm_server.requests[0].body is not None
    assert llm_server.requests[0].body["messages"][-1]["content"] == "Summarise: buy milk\n"
    assert "Summarise: buy milk" in log_of(build, "s")
    assert project.read("out/s.md") == "echo: Summarise: buy milk\n"

    project.write("notes.txt", "buy bread\n")
    again = ok(project.orch("build"))
    assert again.manifest()["steps"]["s"]["reasons"] == ["input modified: notes.txt"]
    assert llm_server.count == 2
    assert project.read("out/s.md") == "echo: Summarise: buy bread\n"


def test_a_steps_timeout_is_the_per_request_timeout_of_its_calls(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.always(slow(5))
    write_orch(
        project,
        {"a": llm("say a", "out/a.md", timeout_s=0.3)},
        {"p": provider(llm_server, max_retries=1, timeout_s=60)},
    )
    build = failed(project.orch("build"))
    assert failure(build, "a")["kind"] == "timeout"
    assert "0.3 s" in failure(build, "a")["message"]
    assert retries(build) == [(1, "timeout")]
    assert llm_server.count == 2


# --------------------------------------------------------------------------- transient faults


@dataclass(frozen=True)
class Transient:
    fault: Callable[[], Fault]
    kind: str  # the llm.retry kind
    wait: tuple[float, float] = FIRST_BACKOFF  # bounds of the llm.retry wait_s
    provider_kind: str = "openai"
    settings: tuple[tuple[str, Any], ...] = ()


TRANSIENT = {
    "500": Transient(lambda: status(500), "server"),
    "502": Transient(lambda: status(502), "server"),
    "503": Transient(lambda: status(503), "server"),
    "529-anthropic": Transient(lambda: status(529), "server", provider_kind="anthropic"),
    "408": Transient(lambda: status(408), "timeout"),
    "409": Transient(lambda: status(409), "server"),
    "429-retry-after": Transient(lambda: rate_limited(0.2), "rate_limit", (0.2, 0.3)),
    "429-retry-after-ms": Transient(lambda: rate_limited_ms(150), "rate_limit", (0.15, 0.25)),
    "429-http-date": Transient(
        lambda: rate_limited_until(datetime.now(UTC) + timedelta(seconds=1)),
        "rate_limit",
        (0.0, 1.2),
    ),
    "slow": Transient(lambda: slow(5), "timeout", settings=(("timeout_s", 0.3),)),
    "drop": Transient(lambda: DROP, "connection"),
    "malformed": Transient(lambda: MALFORMED, "invalid_response"),
    "empty-choices": Transient(lambda: EMPTY_CHOICES, "invalid_response"),
    "empty-content-anthropic": Transient(
        lambda: EMPTY_CHOICES, "invalid_response", provider_kind="anthropic"
    ),
    "ollama-error": Transient(lambda: OLLAMA_ERROR, "server", provider_kind="ollama"),
}


@pytest.mark.parametrize("case", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_transient_fault_is_retried_and_the_build_succeeds(
    project: Project, llm_server: LlmServer, case: Transient
) -> None:
    llm_server.reply = "fine now"
    llm_server.script(case.fault())
    settings = {"max_retries": 3, **dict(case.settings)}
    write_orch(
        project,
        {"a": llm("say a", "out/a.md")},
        {"p": provider(llm_server, case.provider_kind, **settings)},
    )
    build = ok(project.orch("build"))

    assert project.read("out/a.md") == "fine now"
    assert llm_server.count == 2
    assert retries(build) == [(1, case.kind)]
    (retry,) = build.events("llm.retry", "a")
    low, high = case.wait
    assert low <= retry["data"]["wait_s"] <= high
    assert retry["data"]["provider"] == "p"
    assert [e["data"]["attempt"] for e in build.events("llm.request", "a")] == [1, 2]
    assert build.manifest()["steps"]["a"]["meta"]["calls"] == 2
    assert f"attempt 1 failed ({case.kind})" in log_of(build, "a")
    # the server's wait is honoured: the second request came after it
    first, second = llm_server.requests
    assert second.at - first.at >= low


# --------------------------------------------------------------------------- persistent faults


PERSISTENT = {
    "server": (lambda: status(503), "server", {}),
    "rate_limit": (lambda: rate_limited(0.1), "rate_limit", {}),
    "timeout": (lambda: slow(5), "timeout", {"timeout_s": 0.3}),
    "connection": (lambda: DROP, "connection", {}),
    "invalid_response": (lambda: MALFORMED, "invalid_response", {}),
}


@pytest.mark.parametrize(("fault", "kind", "settings"), PERSISTENT.values(), ids=PERSISTENT.keys())
def test_a_persistent_fault_fails_the_step_with_its_kind_and_keep_going_finishes_the_rest(
    project: Project,
    llm_server: LlmServer,
    fault: Callable[[], Fault],
    kind: str,
    settings: dict[str, Any],
) -> None:
    # one more fault than attempts, so a surplus attempt would still fail and be counted
    llm_server.script_for("MARK-bad", fault(), fault(), fault())
    write_orch(
        project,
        {
            "bad": llm("MARK-bad please", "out/bad.md"),
            "good": llm("say good", "out/good.md"),
            "after": llm("use {{ read('out/bad.md') }}", "out/after.md", inputs=["out/bad.md"]),
        },
        {"p": provider(llm_server, max_retries=1, **settings)},
    )
    build = failed(project.orch("build", "-k", "-j", "1"))

    assert llm_server.count_for("MARK-bad") == 2  # max_retries + 1
    assert llm_server.count_for("say good") == 1
    assert failure(build, "bad")["kind"] == kind
    assert retries(build, "bad") == [(1, kind)]
    assert build.statuses() == {"bad": "failed", "good": "ran", "after": "blocked"}
    assert project.read("out/good.md") == "echo: say good"
    assert not project.exists("out/bad.md")
    assert any(line.startswith("FAILED") and "bad" in line for line in build.lines)
    assert sorted(project.lock()) == ["good"]
    assert f"failed ({kind})" in log_of(build, "bad")


def test_orch_provider_max_retries_in_the_env_overrides_the_pipeline(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm_server.always(status(500))
    monkeypatch.setenv("ORCH_PROVIDER_MAX_RETRIES", "0")
    write_orch(project, {"a": llm("say a", "out/a.md")}, {"p": provider(llm_server)})
    build = failed(project.orch("build"))
    assert llm_server.count == 1
    assert retries(build) == []
    assert failure(build, "a")["kind"] == "server"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_a_call_cancels_the_build_and_a_rebuild_resumes(
    project: Project, llm_server: LlmServer, sig: signal.Signals
) -> None:
    llm_server.script_for("say b", slow(30))
    steps = {"a": llm("say a", "out/a.md"), "b": llm("say b", "out/b.md")}
    write_orch(project, steps, {"p": provider(llm_server)})
    process = project.spawn("build", "-j", "1")
    llm_server.wait_for_count(2)  # a is done; b's request is waiting on the server

    process.send_signal(sig)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    (run,) = project.run_folders()
    build = Build(130, "", stderr, run)
    assert build.events()[-1]["type"] == "job.cancelled"
    assert build.statuses() == {"a": "ran", "b": "cancelled"}
    assert not project.exists("out/b.md")
    assert sorted(project.lock()) == ["a"]

    resumed = ok(project.orch("build"))
    assert sorted(ran(resumed.stdout)) == ["b"]
    assert llm_server.count_for("say a") == 1


def test_the_total_timeout_bounds_a_call_retries_included(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.always(slow(5))
    settings: dict[str, Any] = {"timeout_s": 0.4, "total_timeout_s": 0.5, "max_retries": 5}
    write_orch(project, {"a": llm("say a", "out/a.md")}, {"p": provider(llm_server, **settings)})
    build = failed(project.orch("build"))
    assert failure(build, "a")["kind"] == "timeout"
    first = llm_server.requests[0].at
    late = [r.at - first for r in llm_server.requests if r.at - first > 0.5]
    assert late == [], f"requests sent after the 0.5 s budget: {late}"
    duration = build.manifest()["steps"]["a"]["duration_s"]
    assert duration < 0.5 + 0.3, f"the call took {duration} s with a 0.5 s budget"


ODD_REPLIES = {
    "openai-choice-not-an-object": ("openai", {"choices": ["hello"]}),
    "anthropic-text-block-without-text": ("anthropic", {"content": [{"type": "text"}]}),
    "anthropic-text-not-a-string": ("anthropic", {"content": [{"type": "text", "text": None}]}),
}


@pytest.mark.parametrize(("kind", "body"), ODD_REPLIES.values(), ids=ODD_REPLIES.keys())
def test_a_2xx_reply_of_the_wrong_shape_is_an_invalid_response_not_a_crash(
    project: Project, llm_server: LlmServer, kind: str, body: dict[str, Any]
) -> None:
    llm_server.script_for("say a", status(200, body=body), status(200, body=body))
    write_orch(
        project,
        {"a": llm("say a", "out/a.md"), "b": {"run": "echo b > b.txt", "output": "b.txt"}},
        {"p": provider(llm_server, kind, max_retries=1)},
    )
    before = project.run_folders()
    process = project.spawn("build", "-k", "-j", "1")
    stdout, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert process.returncode == 1, stdout + stderr
    (run,) = project.run_folders() - before
    build = Build(process.returncode, stdout, stderr, run)
    assert build.manifest()["status"] == "failed"
    assert failure(build, "a")["kind"] == "invalid_response"
    assert retries(build, "a") == [(1, "invalid_response")]
    assert build.statuses()["b"] == "ran"


# --------------------------------------------------------------------------- client errors


@pytest.mark.parametrize("key_set", [True, False], ids=["key-set", "key-unset"])
def test_unauthorized_fails_at_once_naming_the_key_variable(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch, key_set: bool
) -> None:
    key = "sk-test-" + uuid.uuid4().hex
    if key_set:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    llm_server.always(status(401))
    write_orch(project, {"a": llm("say a", "out/a.md")}, {"p": provider(llm_server, max_retries=3)})
    build = failed(project.orch("build"))

    assert llm_server.count == 1
    assert retries(build) == []
    found = failure(build, "a")
    assert found["kind"] == "client"
    assert "401" in found["message"]
    assert "OPENAI_API_KEY" in found["message"]
    assert key not in found["message"]
    if not key_set:
        assert "not set" in found["message"]
    assert "OPENAI_API_KEY" in build.stdout


@pytest.mark.parametrize("code", [400, 404, 422])
def test_other_client_errors_are_not_retried(
    project: Project, llm_server: LlmServer, code: int
) -> None:
    llm_server.always(status(code))
    write_orch(project, {"a": llm("say a", "out/a.md")}, {"p": provider(llm_server, max_retries=3)})
    build = failed(project.orch("build"))
    assert llm_server.count == 1
    assert retries(build) == []
    found = failure(build, "a")
    assert found["kind"] == "client"
    assert str(code) in found["message"]


def test_a_wrong_base_url_fails_with_a_client_error_not_retried(
    project: Project, llm_server: LlmServer
) -> None:
    # the server's root has no /chat/completions below /nowhere: a real 404
    write_orch(
        project,
        {"a": llm("say a", "out/a.md")},
        {"p": provider(llm_server, base_url=llm_server.url + "/nowhere")},
    )
    build = failed(project.orch("build"))
    assert llm_server.count == 1
    assert failure(build, "a")["kind"] == "client"


# --------------------------------------------------------------------------- retry-after cap


@pytest.mark.parametrize(
    ("fault", "env"),
    [
        (rate_limited(3600), {}),
        (rate_limited_ms(3_600_000), {}),
        (rate_limited(2), {"ORCH_PROVIDER_RETRY_AFTER_CAP_S": "0.5"}),
    ],
    ids=["retry-after", "retry-after-ms", "env-cap"],
)
def test_a_retry_after_above_the_cap_fails_at_once_saying_until_when(
    project: Project,
    llm_server: LlmServer,
    monkeypatch: pytest.MonkeyPatch,
    fault: Fault,
    env: dict[str, str],
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    llm_server.always(fault)
    write_orch(project, {"a": llm("say a", "out/a.md")}, {"p": provider(llm_server, max_retries=3)})
    before = datetime.now(UTC)
    build = failed(project.orch("build"))

    assert llm_server.count == 1
    assert retries(build) == []
    found = failure(build, "a")
    assert found["kind"] == "rate_limit"
    assert "cap" in found["message"]
    match = ISO_SECOND.search(found["message"])
    assert match is not None, found["message"]
    until = datetime.strptime(match.group(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    asked = 3600 if not env else 2
    assert abs((until - before).total_seconds() - asked) < 5


# --------------------------------------------------------------------------- circuit breaker


def breaker_provider(server: LlmServer, **settings: Any) -> dict[str, dict[str, Any]]:
    return {"p": provider(server, max_retries=0, cb_min_calls=2, **settings)}


def test_the_circuit_opens_after_threshold_failures_and_later_steps_fail_fast(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.always(status(500))
    steps = {f"s{i}": llm(f"say s{i}", f"out/s{i}.md") for i in range(1, 5)}
    write_orch(project, steps, breaker_provider(llm_server))
    build = failed(project.orch("build", "-k", "-j", "1"))

    assert llm_server.count == 2
    (opened,) = build.events("circuit.opened")
    assert opened["step"] == "s2"
    assert opened["data"]["failures"] == 2
    assert opened["data"]["kind"] == "openai"
    assert opened["data"]["model"] == "m1"
    assert opened["data"]["base_url"] == llm_server.openai_url
    kinds = {step: failure(build, step)["kind"] for step in steps}
    assert kinds == {
        "s1": "server",
        "s2": "server",
        "s3": "circuit_breaker",
        "s4": "circuit_breaker",
    }
    assert build.events("llm.request", "s3") == []
    assert build.events("llm.request", "s4") == []
    assert build.events("circuit.closed") == []

    # a breaker lives for one build: the next one tries again
    llm_server.always(None)
    again = ok(project.orch("build", "-k", "-j", "1"))
    assert again.statuses() == dict.fromkeys(steps, "ran")
    assert llm_server.count == 6


def cooldown_pipeline(project: Project, server: LlmServer) -> None:
    """f1, f2 fail and open the breaker; `pause` outlasts the 0.5 s cooldown; then l1, l2."""
    steps = {
        "f1": llm("say f1", "out/f1.md"),
        "f2": llm("say f2", "out/f2.md"),
        "pause": {"run": "sleep 0.7; echo done > pause.txt", "output": "pause.txt"},
        "l1": llm("say l1", "out/l1.md", needs=["pause"]),
        "l2": llm("say l2", "out/l2.md", needs=["pause"]),
    }
    write_orch(project, steps, breaker_provider(server, cb_cooldown_s=0.5))


def test_after_the_cooldown_one_probe_closes_the_circuit(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.script(status(500), status(500))  # then the server has recovered
    cooldown_pipeline(project, llm_server)
    build = failed(project.orch("build", "-k", "-j", "1"))

    assert build.statuses() == {
        "f1": "failed",
        "f2": "failed",
        "pause": "ran",
        "l1": "ran",
        "l2": "ran",
    }
    assert llm_server.count == 4
    (opened,) = build.events("circuit.opened")
    assert opened["step"] == "f2"
    (closed,) = build.events("circuit.closed")
    assert closed["step"] == "l1"
    l1 = [e for e in build.events(step="l1") if e["type"].startswith(("llm.", "circuit."))]
    assert types(l1) == ["llm.request", "circuit.closed", "llm.response"]
    assert project.read("out/l2.md") == "echo: say l2"


def test_a_failed_probe_reopens_the_circuit_and_the_next_step_fails_fast(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.always(status(500))
    cooldown_pipeline(project, llm_server)
    build = failed(project.orch("build", "-k", "-j", "1"))

    assert llm_server.count == 3  # f1, f2 and the one probe from l1
    assert [e["step"] for e in build.events("circuit.opened")] == ["f2", "l1"]
    assert build.events("circuit.closed") == []
    assert failure(build, "l1")["kind"] == "server"
    assert failure(build, "l2")["kind"] == "circuit_breaker"
    assert build.events("llm.request", "l2") == []
    assert build.statuses()["pause"] == "ran"


# --------------------------------------------------------------------------- keys


def test_what_enters_an_llm_steps_key(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = LlmServer()
    try:
        settings: dict[str, Any] = {"options": {"temperature": 0}, "timeout_s": 30}

        def build_with(
            prompt: str = "say a", step: dict[str, Any] | None = None, **changes: Any
        ) -> Build:
            config = provider(llm_server, **{**settings, **changes})
            write_orch(project, {"a": llm(prompt, "out/a.md", **(step or {}))}, {"p": config})
            return ok(project.orch("build"))

        build_with()
        assert llm_server.count == 1

        unchanged = build_with()
        assert llm_server.count == 1
        assert unchanged.unchanged
        assert unchanged.stdout == "all 1 step up to date\n"

        # settings of how to reach the model are not part of the key
        assert build_with(timeout_s=5).unchanged
        assert build_with(max_retries=1).unchanged
        assert build_with(base_url=other.openai_url).unchanged
        assert build_with(step={"description": "calls the model"}).unchanged
        monkeypatch.setenv("ORCH_PROVIDER_TIMEOUT_S", "7")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-another-key")
        assert build_with().unchanged
        assert llm_server.count == 1
        assert other.count == 0

        # what the model sees is
        rerun = build_with(options={"temperature": 0.5})
        assert rerun.statuses() == {"a": "ran"}
        assert rerun.manifest()["steps"]["a"]["reasons"] == ["definition changed"]
        assert llm_server.count == 2
        assert llm_server.requests[-1].body is not None
        assert llm_server.requests[-1].body["temperature"] == 0.5

        build_with(options={"temperature": 0.5}, model="m2")
        assert llm_server.count == 3

        prompt = build_with("say b", options={"temperature": 0.5}, model="m2")
        assert prompt.statuses() == {"a": "ran"}
        assert llm_server.count == 4
        assert project.read("out/a.md") == "echo: say b"
    finally:
        other.close()


# --------------------------------------------------------------------------- extract: files


def files_reply(*blocks: tuple[str, str]) -> str:
    parts = ["Here are the files."]
    for path, body in blocks:
        parts.append(f"```python {path}\n{body}```")
    return "\n\n".join(parts) + "\n"


@pytest.mark.parametrize("named", ["../x.py", "/tmp/abs/x.py", "app/../../x.py", "~/x.py"])
def test_extract_files_refuses_a_path_outside_the_output_folder_and_writes_nothing(
    project: Project, llm_server: LlmServer, named: str
) -> None:
    llm_server.reply = files_reply(("app/ok.py", "ok = 1\n"), (named, "bad = 1\n"))
    write_orch(
        project,
        {"gen": {"prompt": "make files", "extract": "files", "outputs": ["app/"]}},
        {"p": provider(llm_server)},
    )
    build = failed(project.orch("build"))

    found = failure(build, "gen")
    assert found["kind"] == "extract"
    assert named in found["message"]
    assert not project.exists("app")
    tmp = project.root.parent
    assert list(tmp.rglob("x.py")) == []
    assert not Path("/tmp/abs/x.py").exists()
    assert build.events("file.written") == []
    assert project.lock() == {}


def test_extract_files_writes_each_file_and_removes_one_the_reply_no_longer_names(
    project: Project, llm_server: LlmServer
) -> None:
    replies = {
        "v1": files_reply(("app/main.py", "main = 1\n"), ("util.py", "util = 1\n")),
        "v2": files_reply(("app/main.py", "main = 2\n")),
    }
    llm_server.reply = lambda fmt, body: replies[body["messages"][-1]["content"].split()[-1]]

    def build_version(version: str) -> Build:
        write_orch(
            project,
            {"gen": {"prompt": f"make {version}", "extract": "files", "outputs": ["app/"]}},
            {"p": provider(llm_server)},
        )
        return ok(project.orch("build"))

    build_version("v1")
    assert project.read("app/main.py") == "main = 1\n"
    assert project.read("app/util.py") == "util = 1\n"

    build_version("v2")
    assert project.read("app/main.py") == "main = 2\n"
    assert not project.exists("app/util.py")
    assert llm_server.count == 2

    # back and forth again: both versions come from the cache, stale files removed alike
    assert build_version("v1").statuses() == {"gen": "restored"}
    assert project.read("app/util.py") == "util = 1\n"
    assert build_version("v2").statuses() == {"gen": "restored"}
    assert sorted(p.name for p in (project.root / "app").iterdir()) == ["main.py"]
    assert project.read("app/main.py") == "main = 2\n"
    assert llm_server.count == 2


# --------------------------------------------------------------------------- extract: json


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "tags": {"type": "array"}},
    "required": ["name"],
}


def json_pipeline(project: Project, server: LlmServer) -> None:
    step = {"prompt": "describe", "extract": "json", "schema": SCHEMA, "output": "out/d.json"}
    write_orch(project, {"d": step}, {"p": provider(server)})


@pytest.mark.parametrize(
    "reply",
    [
        '{"name":"notes","tags":["a","b"]}',
        'Here:\n```json\n{"name": "notes", "tags": ["a", "b"]}\n```\n',
    ],
    ids=["bare", "fenced"],
)
def test_extract_json_writes_a_valid_reply_pretty_printed(
    project: Project, llm_server: LlmServer, reply: str
) -> None:
    llm_server.reply = reply
    json_pipeline(project, llm_server)
    ok(project.orch("build"))
    expected = {"name": "notes", "tags": ["a", "b"]}
    assert project.read("out/d.json") == json.dumps(expected, indent=2) + "\n"


@pytest.mark.parametrize(
    "reply", ['{"tags": []}', '{"name": 5}', "not json at all"], ids=["missing", "type", "text"]
)
def test_extract_json_fails_a_reply_that_breaks_the_schema(
    project: Project, llm_server: LlmServer, reply: str
) -> None:
    llm_server.reply = reply
    json_pipeline(project, llm_server)
    build = failed(project.orch("build"))
    assert failure(build, "d")["kind"] == "extract"
    assert not project.exists("out/d.json")
    assert llm_server.count == 2, "one repair by default, then the step fails"
    first, repair = llm_server.requests
    assert repair.body is not None and first.body is not None
    assert repair.body["messages"][:-2] == first.body["messages"]
    assert repair.body["messages"][-2] == {"role": "assistant", "content": reply}
    assert "could not be used: the reply" in repair.body["messages"][-1]["content"]
    assert not project.exists(".orch/cache/actions") or not any(
        (project.root / ".orch/cache/actions").iterdir()
    ), "nothing of it is cached"


# --------------------------------------------------------------------------- addresses and keys


def test_each_kind_finds_its_server_through_the_environment_when_the_pipeline_names_none(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.url)
    monkeypatch.setenv("OLLAMA_HOST", llm_server.url.removeprefix("http://"))  # host:port
    write_orch(
        project,
        {
            "a": llm("say a", "out/a.md", provider="o"),
            "b": llm("say b", "out/b.md", provider="c"),
            "c": llm("say c", "out/c.md", provider="l"),
        },
        {
            "o": {"kind": "openai", "model": "m1"},
            "c": {"kind": "anthropic", "model": "m1"},
            "l": {"kind": "ollama", "model": "m1"},
        },
    )
    ok(project.orch("build", "-j", "1"))
    assert [r.path for r in llm_server.requests] == [
        "/v1/chat/completions",
        "/v1/messages",
        "/api/chat",
    ]


def test_a_base_url_in_the_pipeline_wins_over_the_environment_and_may_come_from_it(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    monkeypatch.setenv("LLM_URL", llm_server.openai_url)
    write_orch(
        project,
        {"a": llm("say a", "out/a.md")},
        {"p": provider(llm_server, base_url="{{ env.LLM_URL }}", max_retries=0)},
    )
    ok(project.orch("build"))
    assert llm_server.count == 1

    with LlmServer() as other:
        monkeypatch.setenv("LLM_URL", other.openai_url)
        assert ok(project.orch("build")).unchanged
        ok(project.orch("build", "-B"))
        assert (llm_server.count, other.count) == (1, 1)


def test_api_key_env_names_the_variable_that_holds_the_key(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-default-variable")
    monkeypatch.setenv("MY_LLM_KEY", "sk-my-own-variable")
    write_orch(
        project,
        {"a": llm("say a", "out/a.md"), "b": llm("say b", "out/b.md")},
        {"p": provider(llm_server, api_key_env="MY_LLM_KEY")},
    )
    llm_server.script_for("say b", status(403))
    build = failed(project.orch("build", "-k", "-j", "1"))
    assert {r.headers["authorization"] for r in llm_server.requests} == {
        "Bearer sk-my-own-variable"
    }
    message = failure(build, "b")["message"]
    assert "MY_LLM_KEY" in message
    assert "sk-my-own-variable" not in message


def test_an_api_key_from_dotenv_is_used_below_the_real_environment_and_never_recorded(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv_key = "sk-test-" + uuid.uuid4().hex
    project.write(".env", f"OPENAI_API_KEY={dotenv_key}\n")
    write_orch(
        project, {"a": llm("say a", "out/a.md")}, {"p": provider(llm_server)}, dotenv=[".env"]
    )
    first = ok(project.orch("build"))
    assert llm_server.requests[-1].headers["authorization"] == f"Bearer {dotenv_key}"
    assert_nowhere(dotenv_key, project, first)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-real-environment")
    ok(project.orch("build", "-B"))
    assert llm_server.requests[-1].headers["authorization"] == "Bearer sk-from-the-real-environment"


def test_the_provider_flag_chooses_the_provider_of_llm_steps(
    project: Project, llm_server: LlmServer
) -> None:
    write_orch(
        project,
        {"a": llm("say a", "out/a.md")},
        {"local": provider(llm_server), "offline": {"kind": "fake", "echo": True}},
        default_provider="local",
    )
    ok(project.orch("build", "--provider", "offline", "--offline"))
    assert project.read("out/a.md") == "say a"
    assert llm_server.count == 0

    build = ok(project.orch("build"))  # another provider kind: another key
    assert build.statuses() == {"a": "ran"}
    assert project.read("out/a.md") == "echo: say a"
    assert llm_server.count == 1


# --------------------------------------------------------------------------- secrets


def everything_written(project: Project) -> dict[Path, bytes]:
    found = {p: p.read_bytes() for p in (project.root / ".orch").rglob("*") if p.is_file()}
    lock = project.root / "orch.lock"
    if lock.exists():
        found[lock] = lock.read_bytes()
    return found


def assert_nowhere(key: str, project: Project, *builds: Build) -> None:
    for path, data in everything_written(project).items():
        assert key.encode() not in data, f"the API key is in {path}"
    for build in builds:
        assert key not in build.stdout
        assert key not in build.stderr


def test_api_keys_never_appear_in_runs_logs_lock_cache_or_output(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_key = "sk-test-" + uuid.uuid4().hex
    anthropic_key = "sk-ant-test-" + uuid.uuid4().hex
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic_key)
    echoed = {"error": {"message": f"Incorrect API key provided: {openai_key}"}}
    write_orch(
        project,
        {
            "a": llm("say a", "out/a.md", provider="gpt"),
            "b": llm("say b", "out/b.md", provider="claude"),
            "c": llm("say c", "out/c.md", provider="gpt"),
        },
        {"gpt": provider(llm_server), "claude": provider(llm_server, "anthropic")},
    )
    # a: one retried 500 whose body echoes the key; c: a 401 echoing it
    llm_server.script_for("say a", status(500, body=echoed))
    llm_server.script_for("say c", status(401, body=echoed))
    first = failed(project.orch("build", "-k", "-j", "1"))
    assert first.statuses() == {"a": "ran", "b": "ran", "c": "failed"}
    assert retries(first, "a") == [(1, "server")]
    assert "Incorrect API key provided" in failure(first, "c")["message"]

    # every step reruns and gets a 401 whose body echoes the key it was sent
    echoed_ant = {"type": "error", "error": {"message": f"invalid x-api-key: {anthropic_key}"}}
    llm_server.script_for("say a", status(401, body=echoed))
    llm_server.script_for("say b", status(401, body=echoed_ant))
    llm_server.script_for("say c", status(401, body=echoed))
    second = failed(project.orch("build", "-k", "-B"))

    assert_nowhere(openai_key, project, first, second)
    assert_nowhere(anthropic_key, project, first, second)
    # the keys were used: the server got them
    gpt = [r for r in llm_server.requests if r.path == "/v1/chat/completions"]
    claude = [r for r in llm_server.requests if r.path == "/v1/messages"]
    assert {r.headers["authorization"] for r in gpt} == {f"Bearer {openai_key}"}
    assert {r.headers["x-api-key"] for r in claude} == {anthropic_key}
    assert second.statuses() == dict.fromkeys("abc", "failed")


def test_an_ollama_error_body_echoing_the_key_does_not_leak_it(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-test-" + uuid.uuid4().hex
    monkeypatch.setenv("OLLAMA_KEY", key)
    llm_server.always(status(200, body={"error": f"invalid token {key}"}))
    write_orch(
        project,
        {"a": llm("say a", "out/a.md")},
        {"p": provider(llm_server, "ollama", api_key_env="OLLAMA_KEY", max_retries=1)},
    )
    build = failed(project.orch("build"))
    assert llm_server.requests[0].headers["authorization"] == f"Bearer {key}"
    assert_nowhere(key, project, build)


# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_fails_steps_that_need_a_call_and_restores_from_the_cache(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    write_orch(
        project,
        {"a": llm("say a", "out/a.md"), "b": llm("say b", "out/b.md")},
        {"p": provider(llm_server)},
    )

    def offline_build() -> Build:
        if how == "env":
            with monkeypatch.context() as env:
                env.setenv("ORCH_OFFLINE", "1")
                return project.orch("build", "-k")
        return project.orch("build", "-k", "--offline")

    cold = failed(offline_build())
    assert llm_server.count == 0
    for step in ("a", "b"):
        found = failure(cold, step)
        assert found["kind"] == "offline"
        assert "'p'" in found["message"]
        assert any(line.startswith("FAILED") and step in line for line in cold.lines)
    assert not project.exists("out")

    ok(project.orch("build"))
    assert llm_server.count == 2
    (project.root / "out" / "a.md").unlink()
    (project.root / "out" / "b.md").unlink()

    warm = ok(offline_build())
    assert warm.statuses() == {"a": "restored", "b": "restored"}
    assert project.read("out/a.md") == "echo: say a"
    assert project.read("out/b.md") == "echo: say b"
    assert llm_server.count == 2


def test_the_fake_provider_works_offline(project: Project) -> None:
    write_orch(
        project,
        {"a": llm("say a", "out/a.md")},
        {"fake": {"kind": "fake", "echo": True}},
    )
    build = ok(project.orch("build", "--offline"))
    assert project.read("out/a.md") == "say a"
    assert build.statuses() == {"a": "ran"}


# --------------------------------------------------------------------------- concurrency


def test_max_concurrency_limits_requests_in_flight_under_a_larger_jobs(
    project: Project, llm_server: LlmServer
) -> None:
    latency = 0.2
    llm_server.latency = latency
    steps = {f"s{i}": llm(f"say s{i}", f"out/s{i}.md") for i in range(6)}
    write_orch(project, steps, {"p": provider(llm_server, max_concurrency=2)})
    ok(project.orch("build", "-j", "6"))

    arrivals = sorted(r.at for r in llm_server.requests)
    assert len(arrivals) == 6
    # a third request can only leave once one of the two before it has been answered, and the
    # server answers `latency` after arrival: no three arrivals within one latency window
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[2:], strict=False)]
    assert min(gaps) >= latency - 0.01, gaps
    # and two did run at once: the limit is 2, not 1
    assert min(b - a for a, b in itertools.pairwise(arrivals)) < latency / 2


def test_a_call_waiting_to_retry_does_not_hold_its_concurrency_slot(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.script_for("say a", rate_limited(0.4))
    steps = {
        "a": llm("say a", "out/a.md"),
        "gate": {"run": "echo > gate.txt", "output": "gate.txt"},  # b starts after a's call
        "b": {**llm("say b", "out/b.md"), "needs": ["gate"]},
    }
    write_orch(project, steps, {"p": provider(llm_server, max_concurrency=1)})
    build = ok(project.orch("build", "-j", "2"))
    order = [(r.body or {})["messages"][-1]["content"] for r in llm_server.requests]
    assert order == ["say a", "say b", "say a"]
    assert retries(build, "a") == [(1, "rate_limit")]


# --------------------------------------------------------------------------- usage and cost


def test_usage_and_cost_in_the_manifest_follow_the_servers_token_counts(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = "one two three"  # 3 output tokens
    llm_server.cached_tokens = 2
    price = {"input": 1.0, "output": 2.0, "cached": 0.5}
    write_orch(
        project,
        {
            "a": llm("one two three four five", "out/a.md", system="Be brief."),  # 7 in
            "b": llm("one two three four", "out/b.md"),  # 4 in
        },
        {"p": provider(llm_server, price=price)},
    )
    build = ok(project.orch("build", "-j", "1"))
    manifest = build.manifest()

    def cost(fresh: int, cached: int, output: int) -> float:
        return round((fresh * 1.0 + cached * 0.5 + output * 2.0) / 1_000_000, 6)

    a, b = manifest["steps"]["a"]["meta"], manifest["steps"]["b"]["meta"]
    assert a["tokens"] == {"input": 7, "output": 3, "cached": 2}
    assert b["tokens"] == {"input": 4, "output": 3, "cached": 2}
    assert a["cost"] == pytest.approx(cost(5, 2, 3))
    assert b["cost"] == pytest.approx(cost(2, 2, 3))
    assert manifest["usage"]["calls"] == 2
    assert manifest["usage"]["tokens"] == {"input": 11, "output": 6, "cached": 4}
    assert manifest["usage"]["cost"] == pytest.approx(cost(7, 4, 6))
    (succeeded,) = build.events("step.succeeded", "a")
    assert succeeded["data"]["tokens"] == a["tokens"]


def test_the_usage_of_a_step_that_failed_after_its_call_is_still_counted(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = "not json at all"  # 4 output tokens
    step: dict[str, Any] = {"prompt": "describe this", "extract": "json", "output": "out/d.json"}
    step["repair"] = 0
    price = {"input": 1.0, "output": 2.0}
    write_orch(project, {"d": step}, {"p": provider(llm_server, price=price)})
    build = failed(project.orch("build"))
    assert failure(build, "d")["kind"] == "extract"
    (response,) = build.events("llm.response", "d")
    assert response["data"]["tokens"] == {"input": 2, "output": 4, "cached": 0}
    usage = build.manifest()["usage"]
    assert usage["calls"] == 1
    assert usage["tokens"] == {"input": 2, "output": 4, "cached": 0}
    assert usage["cost"] == pytest.approx((2 * 1.0 + 4 * 2.0) / 1_000_000)


def test_a_provider_without_a_price_reports_tokens_but_no_cost(
    project: Project, llm_server: LlmServer
) -> None:
    write_orch(project, {"a": llm("say a", "out/a.md")}, {"p": provider(llm_server)})
    manifest = ok(project.orch("build")).manifest()
    assert "cost" not in manifest["steps"]["a"]["meta"]
    assert "cost" not in manifest["usage"]
    assert manifest["usage"]["tokens"] == {"input": 2, "output": 3, "cached": 0}


# --------------------------------------------------------------------------- fake provider


def test_the_fake_provider_replies_from_its_responses_folder_and_reruns_when_a_reply_changes(
    project: Project,
) -> None:
    project.write("replies/a.md", "first reply\n")
    write_orch(
        project,
        {"a": llm("say a", "out/a.md")},
        {"fake": {"kind": "fake", "responses": "replies"}},
    )
    first = ok(project.orch("build"))
    assert project.read("out/a.md") == "first reply\n"
    assert first.manifest()["steps"]["a"]["meta"]["provider"] == "fake"

    assert ok(project.orch("build")).unchanged

    project.write("replies/a.md", "second reply\n")
    again = ok(project.orch("build"))
    assert again.statuses() == {"a": "ran"}
    assert project.read("out/a.md") == "second reply\n"


def test_the_fake_provider_echoes_the_rendered_prompt(project: Project) -> None:
    write_orch(
        project,
        {"a": llm("say {{ who }}", "out/a.md")},
        {"fake": {"kind": "fake", "echo": True}},
        vars={"who": "hello"},
    )
    ok(project.orch("build"))
    assert project.read("out/a.md") == "say hello"


def test_the_fake_provider_without_a_reply_file_names_the_file_to_create(
    project: Project,
) -> None:
    write_orch(
        project,
        {"a": llm("say a", "out/a.md")},
        {"fake": {"kind": "fake", "responses": "replies"}},
    )
    build = failed(project.orch("build"))
    assert "create replies/a.md" in failure(build, "a")["message"]
    assert "replies/a.md" in build.stdout
    assert not project.exists("out/a.md")

"""The SDKs' retry rules and the outage breaker, end to end against the loopback server.

Each rule is checked by the number of requests the server saw. Waits are never slept out: the
tests wait on the build, and the server's arrival times show the backoff.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from orchestrator.providers.retry import read_timeout

from .buildkit import Build, Project
from .llm_server import Fault, Fraction, LlmServer, slow, status
from .test_providers import FIRST_BACKOFF, failed, failure, llm, ok, provider, retries, write_orch

STEPS = 80
JOBS = "32"


def one_step(project: Project, server: LlmServer, **settings: Any) -> None:
    write_orch(project, {"a": llm("say a", "out/a.md")}, {"p": provider(server, **settings)})


def calls(build: Build, step: str) -> int:
    meta = build.manifest()["steps"][step]["meta"]
    return int(meta.get("calls", 0))


# --------------------------------------------------------------------------- x-should-retry


def test_x_should_retry_false_on_a_500_is_not_retried(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.always(status(500, {"x-should-retry": "false"}))
    one_step(project, llm_server)
    build = failed(project.orch("build"))

    assert llm_server.count == 1
    found = failure(build, "a")
    assert found["kind"] == "server"
    assert "x-should-retry: false" in found["message"]
    assert retries(build) == []
    assert calls(build, "a") == 1


def test_x_should_retry_true_on_a_400_is_retried(project: Project, llm_server: LlmServer) -> None:
    llm_server.script(status(400, {"x-should-retry": "true"}))
    one_step(project, llm_server)
    build = ok(project.orch("build"))

    assert llm_server.count == 2
    assert retries(build) == [(1, "client")]
    assert calls(build, "a") == 2


def test_a_400_without_the_header_is_not_retried(project: Project, llm_server: LlmServer) -> None:
    llm_server.always(status(400))
    one_step(project, llm_server)
    build = failed(project.orch("build"))
    assert llm_server.count == 1
    assert failure(build, "a")["kind"] == "client"


# --------------------------------------------------------------------------- retry-after


def past_date() -> str:
    return format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)


@pytest.mark.parametrize(
    "headers",
    [{"retry-after": "0"}, {"retry-after-ms": "0"}, {"retry-after": "-3"}, {}],
    ids=["retry-after-0", "retry-after-ms-0", "negative", "none"],
)
def test_a_retry_after_of_zero_or_less_gets_the_normal_backoff(
    project: Project, llm_server: LlmServer, headers: dict[str, str]
) -> None:
    llm_server.script(status(429, headers))
    one_step(project, llm_server)
    build = ok(project.orch("build"))

    assert llm_server.count == 2
    (retry,) = build.events("llm.retry", "a")
    low, high = FIRST_BACKOFF
    assert low <= retry["data"]["wait_s"] <= high
    first, second = llm_server.requests
    assert second.at - first.at >= low


def test_a_retry_after_date_in_the_past_gets_the_normal_backoff(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.script(status(503, {"retry-after": past_date()}))
    one_step(project, llm_server)
    build = ok(project.orch("build"))

    (retry,) = build.events("llm.retry", "a")
    assert FIRST_BACKOFF[0] <= retry["data"]["wait_s"] <= FIRST_BACKOFF[1]


# --------------------------------------------------------------------------- max_retries


def test_the_default_is_two_retries_as_in_the_sdks(project: Project, llm_server: LlmServer) -> None:
    llm_server.always(status(500))
    one_step(project, llm_server)
    build = failed(project.orch("build"))

    assert llm_server.count == 3
    assert retries(build) == [(1, "server"), (2, "server")]
    assert calls(build, "a") == 3


# --------------------------------------------------------------------------- timeouts


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address whose listener never accepts: its backlog is full, so a connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}/v1"
    for sock in [*fillers, listener]:
        sock.close()


def test_a_connect_timeout_is_separate_from_the_read_timeout(
    project: Project, llm_server: LlmServer, blackhole: str
) -> None:
    steps = {
        "a": llm("say a", "out/a.md", provider="gone"),
        "b": llm("say b", "out/b.md", provider="p"),
    }
    settings: dict[str, Any] = {"connect_timeout_s": 0.2, "timeout_s": 30, "max_retries": 0}
    providers = {
        "gone": {**provider(llm_server, **settings), "base_url": blackhole},
        "p": provider(llm_server, **settings),
    }
    llm_server.script(slow(0.5))  # a reply slower than the connect timeout still arrives
    write_orch(project, steps, providers)
    build = failed(project.orch("build", "-k"))

    found = failure(build, "a")
    assert found["kind"] == "connection"
    assert "within 0.2 s (connect_timeout_s)" in found["message"]
    assert build.statuses()["b"] == "ran"
    assert llm_server.count == 1


def test_the_read_timeout_still_cuts_a_slow_reply(project: Project, llm_server: LlmServer) -> None:
    llm_server.always(slow(5))
    one_step(project, llm_server, timeout_s=0.3, connect_timeout_s=5, max_retries=0)
    build = failed(project.orch("build"))
    found = failure(build, "a")
    assert found["kind"] == "timeout"
    assert "within 0.3 s" in found["message"]


@pytest.mark.parametrize(
    ("kind", "max_tokens", "configured", "expected"),
    [
        ("anthropic", 4096, None, 120.0),
        ("anthropic", 16_000, None, 450.0),
        ("anthropic", 64_000, None, 600.0),
        ("anthropic", 64_000, 30.0, 30.0),
        ("openai", 64_000, None, 120.0),
    ],
)
def test_a_large_anthropic_max_tokens_gets_the_time_the_sdk_expects(
    kind: str, max_tokens: int, configured: float | None, expected: float
) -> None:
    assert read_timeout(kind, {"max_tokens": max_tokens}, configured) == expected


# --------------------------------------------------------------------------- breaker


def fleet(project: Project, server: LlmServer) -> dict[str, str]:
    """STEPS llm steps on one provider with the default retry and breaker settings."""
    prompts = {f"s{i}": f"say MARK-{i}-END" for i in range(STEPS)}
    steps = {name: llm(prompt, f"out/{name}.md") for name, prompt in prompts.items()}
    write_orch(project, steps, {"p": provider(server)})
    return prompts


def test_30_percent_server_errors_at_j32_never_open_the_breaker(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.latency = 0.01
    prompts = fleet(project, llm_server)
    # at most two faults in a row for one step, so the two retries always get through
    llm_server.fail_fraction(0.3, status(500), seed=11, streak=2)
    build = ok(project.orch("build", "-j", JOBS))

    assert build.events("circuit.opened") == []
    assert build.statuses() == dict.fromkeys(prompts, "ran")
    failed_requests = sum(r.fault is not None for r in llm_server.requests)
    assert failed_requests >= 20, "about 30 % of the requests failed"
    for name, prompt in prompts.items():
        assert calls(build, name) == llm_server.count_for(prompt), name
    assert sum(calls(build, name) for name in prompts) == llm_server.count


def test_an_outage_opens_the_breaker_and_the_rest_fails_fast(
    project: Project, llm_server: LlmServer
) -> None:
    prompts = fleet(project, llm_server)
    llm_server.always(status(503))
    build = failed(project.orch("build", "-k", "-j", JOBS))

    assert 20 <= llm_server.count <= 40, "min_calls, plus the attempts already under way"
    assert llm_server.count < STEPS * 3 / 4
    (opened,) = build.events("circuit.opened")
    assert opened["data"]["failures"] == opened["data"]["calls"] == 20
    assert opened["data"]["rate"] == 1.0
    # a step that got a 503 finds the breaker open when its retry is due
    assert {failure(build, name)["kind"] for name in prompts} == {"circuit_breaker"}
    for name, prompt in prompts.items():
        assert calls(build, name) == llm_server.count_for(prompt) <= 1, name


def test_fraction_draws_do_not_depend_on_the_order_of_arrival() -> None:
    fraction = Fraction(0.3, Fault("status", 500), seed=11)
    draws = [fraction.hits(b"body", n) for n in range(200)]
    assert draws == [fraction.hits(b"body", n) for n in range(200)]
    assert 30 <= sum(draws) <= 90
    capped = Fraction(0.9, Fault("status", 500), seed=11, streak=2)
    run = "".join("x" if capped.hits(b"body", n) else "." for n in range(200))
    assert "xxx" not in run
    assert run.count("x") >= 100

"""`provider: [primary, secondary]`: when the primary is unavailable after its retries (server
errors, rate limits, no connection, an open breaker), the next provider answers; the one that
answered is recorded, and the step's key stays its definition, whoever answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .buildkit import Project
from .llm_server import LlmServer, status
from .test_providers import failure, provider, write_orch


@pytest.fixture
def backup() -> Iterator[LlmServer]:
    """A second server, for the fallback provider."""
    with LlmServer() as server:
        yield server


def pipeline(project: Project, primary: LlmServer, backup: LlmServer, **step: Any) -> None:
    providers = {
        "main": provider(primary, max_retries=1, price={"input": 100.0, "output": 100.0}),
        "spare": provider(backup, "anthropic", model="m2", price={"input": 1.0, "output": 1.0}),
    }
    fields = {"provider": ["main", "spare"], "prompt": "say hi", "output": "hi.md", **step}
    write_orch(project, {"hi": fields}, providers)


def test_an_unavailable_provider_hands_the_call_to_the_next(
    project: Project, llm_server: LlmServer, backup: LlmServer
) -> None:
    llm_server.always(status(503))
    backup.reply = "hello from the spare"
    pipeline(project, llm_server, backup)
    build = project.orch("build")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert project.read("hi.md") == "hello from the spare"
    assert llm_server.count == 2, "the primary's request and its one retry"
    assert backup.count == 1
    (fallback,) = build.events("llm.fallback", "hi")
    assert fallback["data"]["provider"] == "main"
    assert fallback["data"]["to"] == "spare"
    assert fallback["data"]["kind"] == "server"
    meta = build.manifest()["steps"]["hi"]["meta"]
    assert (meta["provider"], meta["model"], meta["calls"]) == ("spare", "m2", 3)
    assert meta["cost"] == pytest.approx((2 + 4) * 1.0 / 1_000_000), "the spare's price"
    body = backup.requests[0].body
    assert body is not None and body["model"] == "m2"
    assert build.run is not None
    log = (build.run / "logs" / "hi.log").read_text()
    assert "main unavailable (HTTP 503" in log


def test_the_key_does_not_depend_on_who_answered(
    project: Project, llm_server: LlmServer, backup: LlmServer
) -> None:
    llm_server.always(status(503))
    pipeline(project, llm_server, backup)
    assert project.orch("build").exit_code == 0
    llm_server.reset()
    again = project.orch("build")
    assert again.started() == [], "up to date: the primary being back changes nothing"
    assert llm_server.count == 0


def test_a_request_the_primary_refuses_is_not_sent_elsewhere(
    project: Project, llm_server: LlmServer, backup: LlmServer
) -> None:
    llm_server.always(status(400))
    pipeline(project, llm_server, backup)
    build = project.orch("build")
    assert build.exit_code == 1
    assert failure(build, "hi")["kind"] == "client"
    assert backup.count == 0, "a bad request would be as bad elsewhere"


def test_the_last_provider_s_failure_fails_the_step(
    project: Project, llm_server: LlmServer, backup: LlmServer
) -> None:
    llm_server.always(status(503))
    backup.always(status(529))
    pipeline(project, llm_server, backup)
    build = project.orch("build")
    assert build.exit_code == 1
    assert failure(build, "hi")["kind"] == "server"
    assert build.manifest()["steps"]["hi"]["meta"]["provider"] == "spare"


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        (["main", "spaer"], "unknown provider 'spaer'; did you mean 'spare'?"),
        (["main", "main"], "step 'hi': provider 'main' is listed twice"),
        ([], "'provider' lists no provider"),
    ],
)
def test_a_wrong_provider_list_is_refused_where_it_is_written(
    project: Project, llm_server: LlmServer, backup: LlmServer, providers: Any, message: str
) -> None:
    pipeline(project, llm_server, backup, provider=providers)
    result = project.orch("validate")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("orch.yaml:")
    assert not project.exists(".orch")


def test_adding_a_fallback_changes_the_definition_so_the_step_reruns(
    project: Project, llm_server: LlmServer, backup: LlmServer
) -> None:
    providers = {"main": provider(llm_server), "spare": provider(backup, "anthropic")}
    single = {"provider": "main", "prompt": "say hi", "output": "hi.md"}
    write_orch(project, {"hi": single}, providers)
    assert project.orch("build").exit_code == 0
    project.pipeline(
        json.dumps(
            {
                "version": 1,
                "providers": providers,
                "steps": {"hi": {**single, "provider": ["main", "spare"]}},
            }
        )
    )
    assert project.orch("build").started() == ["hi"]

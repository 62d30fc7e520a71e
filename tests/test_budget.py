"""`orch build --max-cost`: no paid call starts that could take what was spent plus what is in
flight past the budget; the steps it refuses fail with kind `budget`, nothing of them is cached,
and a build with a higher budget goes on from there."""

from __future__ import annotations

from typing import Any

import pytest

from .buildkit import Build, Project
from .llm_server import LlmServer, slow
from .test_providers import failure, provider, write_orch

PRICE = {"input": 1000.0, "output": 1000.0}
"""A token costs 0.001."""
PROMPT = "x" * 40
"""10 tokens by the estimate (4 characters each)."""
MOST = (10 + 10) * 0.001
"""The most one call may cost: 10 input tokens and its max_tokens of 10."""


def pipeline(project: Project, server: LlmServer, steps: int, **settings: Any) -> None:
    options = {"max_tokens": 10}
    each = {f"s{i}": {"prompt": PROMPT, "output": f"out/{i}.md"} for i in range(steps)}
    write_orch(project, each, {"p": provider(server, options=options, **settings)})


def budget_failures(build: Build) -> list[str]:
    return sorted(
        step
        for step, record in build.manifest()["steps"].items()
        if (record.get("failure") or {}).get("kind") == "budget"
    )


def test_no_call_starts_past_the_budget_and_a_higher_one_goes_on(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.reply = "ok"  # 1 output token; the echo server counts 1 input token
    pipeline(project, llm_server, 5, price=PRICE)
    first = project.orch("build", "-j", "1", "-k", "--max-cost", "0.025")
    assert first.exit_code == 1
    manifest = first.manifest()
    ran = [s for s, r in manifest["steps"].items() if r["status"] == "ran"]
    assert llm_server.count == len(ran) == 5 - len(budget_failures(first))
    assert 0 < len(ran) < 5
    assert manifest["usage"]["max_cost"] == 0.025
    assert manifest["usage"]["cost"] + MOST > 0.025 - 1e-9, "the next call could have passed it"
    message = failure(first, budget_failures(first)[0])["message"]
    assert "the build's budget of 0.025 (--max-cost) would be passed" in message
    assert "raise --max-cost to build the rest" in message
    llm_server.reset()
    llm_server.reply = "ok"
    again = project.orch("build", "--max-cost", "1")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert llm_server.count == 5 - len(ran), "only the refused steps run"


def test_calls_in_flight_count_against_the_budget(project: Project, llm_server: LlmServer) -> None:
    llm_server.always(slow(0.3))
    pipeline(project, llm_server, 4, price=PRICE)
    build = project.orch("build", "-j", "4", "-k", "--max-cost", str(MOST * 2.5))
    assert build.exit_code == 1
    assert len(budget_failures(build)) == 2, "two calls in flight hold what the others need"
    assert llm_server.count == 2


def test_calls_without_a_price_are_not_limited(project: Project, llm_server: LlmServer) -> None:
    pipeline(project, llm_server, 3)
    build = project.orch("build", "--max-cost", "0")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert llm_server.count == 3


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_a_budget_that_is_not_a_positive_number_is_a_usage_error(
    project: Project, llm_server: LlmServer, value: str
) -> None:
    pipeline(project, llm_server, 1, price=PRICE)
    result = project.orch("build", "--max-cost", value)
    assert result.exit_code == 2
    assert "--max-cost" in result.stderr
    assert llm_server.count == 0

"""`orch status` and `orch build --dry-run` say what the llm steps that would run may cost: their
input tokens (the prompt rendered with the inputs as they are), their output limits, and the
most that costs at the providers' prices. Nothing is sent."""

from __future__ import annotations

import json

from .buildkit import Project
from .llm_server import LlmServer
from .test_providers import provider

NOTES = "some notes to summarise " * 25  # 600 characters: about 150 tokens


def pipeline(project: Project, server: LlmServer, price: bool = True) -> None:
    gpt = provider(server, options={"max_tokens": 500})
    if price:
        gpt["price"] = {"input": 1.0, "output": 2.0}
    steps = {
        "notes": {"run": f"printf '{NOTES}' > notes.txt", "output": "notes.txt"},
        "summary": {
            "inputs": ["notes.txt"],
            "prompt": "Summarise: {{ read('notes.txt') }}",
            "output": "summary.md",
        },
        "title": {"prompt": "A title for a note app.", "output": "title.md"},
    }
    project.pipeline(json.dumps({"version": 1, "providers": {"gpt": gpt}, "steps": steps}))


def estimate(project: Project) -> dict[str, object]:
    result = project.orch("status", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    found: dict[str, object] = json.loads(result.stdout)["estimate"]
    return found


def test_status_and_dry_run_estimate_the_llm_steps_that_would_run(
    project: Project, llm_server: LlmServer
) -> None:
    pipeline(project, llm_server)
    status = project.orch("status")
    (line,) = [line for line in status.lines if line.startswith("llm:")]
    assert line.startswith("llm: 2 steps would call a model: about ")
    assert "(some prompts as written: their inputs are not built)" in line
    assert "up to 1,000 output tokens" in line
    assert project.orch("build", "-n").lines[-2] == line
    first = estimate(project)
    assert first["steps"] == 2 and first["rendered"] is False
    assert llm_server.count == 0, "estimating sends nothing"

    assert project.orch("build", "notes").exit_code == 0
    rendered = estimate(project)
    assert rendered["rendered"] is True
    assert isinstance(rendered["input_tokens"], int) and isinstance(first["input_tokens"], int)
    assert rendered["input_tokens"] >= first["input_tokens"] + 140, "the notes are read now"
    expected = (rendered["input_tokens"] * 1.0 + 1000 * 2.0) / 1_000_000
    assert rendered["cost"] == round(expected, 10)


def test_steps_that_would_not_run_are_not_counted(project: Project, llm_server: LlmServer) -> None:
    pipeline(project, llm_server)
    assert project.orch("build").exit_code == 0
    assert estimate(project) is None
    assert not any(line.startswith("llm:") for line in project.orch("status").lines)
    project.pipeline(project.read("orch.yaml").replace("A title", "A name"))
    changed = estimate(project)
    assert changed["steps"] == 1


def test_without_a_price_there_is_no_cost(project: Project, llm_server: LlmServer) -> None:
    pipeline(project, llm_server, price=False)
    found = estimate(project)
    assert found["cost"] is None
    (line,) = [line for line in project.orch("status").lines if line.startswith("llm:")]
    assert "by the providers' prices" not in line

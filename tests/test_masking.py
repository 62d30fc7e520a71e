"""Secret values never reach step logs, events, the terminal or error messages."""

from __future__ import annotations

import json

import pytest

from orchestrator.record.masking import MASK, Masker

from .buildkit import Project
from .llm_server import LlmServer

SECRET = "s3cr3t-value-42"


def _everything(project: Project, result_text: str) -> str:
    """The build's output, and every file under .orch/runs."""
    texts = [result_text]
    for path in (project.root / ".orch" / "runs").rglob("*"):
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(texts)


def test_a_secret_in_a_command_and_its_output_is_masked_in_logs_and_events(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", SECRET)
    project.pipeline(
        """\
        version: 1
        steps:
          deploy:
            run: echo "deploying with {{ env.DEPLOY_TOKEN }}"; echo "$DEPLOY_TOKEN" >&2; exit 3
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    assert result.run is not None
    log = next((result.run / "logs").iterdir()).read_text()
    assert f"deploying with {MASK}" in log
    assert SECRET not in _everything(project, result.stdout + result.stderr)


def test_the_secret_patterns_can_be_changed(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_SECRET_PATTERNS", "CRED_*")
    monkeypatch.setenv("CRED_ONE", SECRET)
    monkeypatch.setenv("PLAIN_TOKEN", "visible-token")
    project.pipeline(
        """\
        version: 1
        steps:
          show:
            run: echo "{{ env.CRED_ONE }} {{ env.PLAIN_TOKEN }}"
        """
    )
    result = project.orch("build")
    assert result.exit_code == 0
    assert result.run is not None
    log = next((result.run / "logs").iterdir()).read_text()
    assert f"{MASK} visible-token" in log


def test_a_secret_in_a_path_is_masked_in_the_error(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEY", SECRET)
    project.pipeline(
        """\
        version: 1
        steps:
          read:
            inputs: ["data/{{ env.API_KEY }}.txt"]
            run: "true"
        """
    )
    result = project.orch("build")
    assert result.exit_code == 2
    assert f"data/{MASK}.txt" in result.stderr
    assert SECRET not in result.stderr


def test_the_key_a_provider_names_is_masked_in_its_step_log(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_CREDENTIAL", SECRET)  # matches no pattern: masked as api_key_env
    pipeline = {
        "version": 1,
        "providers": {
            "local": {
                "kind": "openai",
                "model": "m",
                "base_url": llm_server.openai_url,
                "api_key_env": "LLM_CREDENTIAL",
                "max_retries": 0,
            }
        },
        "steps": {"ask": {"prompt": "say {{ env.LLM_CREDENTIAL }}", "output": "reply.txt"}},
    }
    project.pipeline(json.dumps(pipeline))
    result = project.orch("build")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert SECRET not in _everything(project, result.stdout + result.stderr)


def test_short_values_and_unrelated_text_are_left_alone() -> None:
    masker = Masker.from_environment({"A_KEY": "abc", "B_TOKEN": "longer-token", "HOME": "/h"})
    assert masker.text("abc longer-token /h") == f"abc {MASK} /h"
    assert masker.value({"list": ["longer-token", 1]}) == {"list": [MASK, 1]}

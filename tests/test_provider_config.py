"""Provider settings: environment overrides, addresses and keys, retry-after, usage and cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from orchestrator.cli.commands import cli
from orchestrator.core.errors import UsageError
from orchestrator.language.spec import AnthropicProvider, OllamaProvider, OpenAIProvider, Price
from orchestrator.providers.base import Usage
from orchestrator.providers.config import display_url, overrides, resolve
from orchestrator.providers.http import retry_after

from .buildkit import Project


def test_orch_provider_variables_override_the_pipeline() -> None:
    provider = OpenAIProvider(kind="openai", model="m", timeout_s=120, max_retries=3)
    env = {"ORCH_PROVIDER_TIMEOUT_S": "7.5", "ORCH_PROVIDER_MAX_RETRIES": "0"}
    settings = resolve("p", provider, env)
    assert (settings.timeout_s, settings.max_retries) == (7.5, 0)
    assert settings.cb_min_calls == 20 and settings.cb_cooldown_s == 30


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ORCH_PROVIDER_TIMEOUT_S", "abc", "expected a number above 0"),
        ("ORCH_PROVIDER_TIMEOUT_S", "0", "expected a number above 0"),
        ("ORCH_PROVIDER_MAX_RETRIES", "-1", "expected a whole number at least 0"),
        ("ORCH_PROVIDER_CB_MIN_CALLS", "1.5", "expected a whole number at least 1"),
    ],
)
def test_invalid_overrides_are_refused(variable: str, value: str, expected: str) -> None:
    with pytest.raises(UsageError) as error:
        overrides({variable: value})
    assert str(error.value) == f"{variable}={value!r}: {expected}"


def test_an_invalid_override_stops_a_build_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orch.yaml").write_text(
        "version: 1\nproviders: { p: { kind: fake, echo: true } }\n"
        "steps: { a: { prompt: hi, output: a.md } }\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCH_PROVIDER_CB_COOLDOWN_S", "soon")
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 2
    assert "ORCH_PROVIDER_CB_COOLDOWN_S='soon': expected a number above 0" in result.stderr
    assert not (tmp_path / "a.md").exists()


def test_addresses_and_keys_come_from_each_kinds_variables() -> None:
    env = {
        "OPENAI_BASE_URL": "http://localhost:8000/v1/",
        "OPENAI_API_KEY": "k1",
        "OLLAMA_HOST": "gpu-box:11434",
        "MY_KEY": "k2",
    }
    openai = resolve("o", OpenAIProvider(kind="openai"), env)
    assert (openai.base_url, openai.api_key, openai.api_key_env) == (
        "http://localhost:8000/v1",
        "k1",
        "OPENAI_API_KEY",
    )
    assert "k1" not in repr(openai)
    ollama = resolve("l", OllamaProvider(kind="ollama", api_key_env="MY_KEY"), env)
    assert (ollama.base_url, ollama.api_key) == ("http://gpu-box:11434", "k2")
    anthropic = resolve("a", AnthropicProvider(kind="anthropic"), {})
    assert anthropic.base_url == "https://api.anthropic.com"
    assert anthropic.api_key is None
    assert anthropic.options == {"max_tokens": 4096}


def test_a_base_url_in_the_pipeline_wins_over_the_environment() -> None:
    provider = OpenAIProvider(kind="openai", base_url="http://10.0.0.2:9000/v1")
    settings = resolve("o", provider, {"OPENAI_BASE_URL": "http://elsewhere/v1"})
    assert settings.base_url == "http://10.0.0.2:9000/v1"


def test_addresses_are_shown_without_credentials() -> None:
    assert display_url("https://user:secret@host:1/v1") == "https://host:1/v1"
    assert display_url("http://host/v1") == "http://host/v1"


def test_retry_after_in_its_three_forms() -> None:
    assert retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    later = datetime.now(UTC) + timedelta(seconds=120)
    waited = retry_after(httpx.Headers({"retry-after": format_datetime(later, usegmt=True)}))
    assert waited is not None and 115 <= waited <= 120
    assert retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after(httpx.Headers({})) is None


def test_cost_prices_cached_input_at_its_own_price_or_the_input_price() -> None:
    usage = Usage(input=1_000_000, output=500_000, cached=400_000)
    assert usage.cost(Price(input=2.0, output=8.0)) == 2.0 + 4.0
    assert usage.cost(Price(input=2.0, output=8.0, cached=0.5)) == 1.2 + 0.2 + 4.0
    assert usage + Usage(1, 2, 3) == Usage(1_000_001, 500_002, 400_003)


def _pipeline_with_two_providers(folder: Path) -> None:
    (folder / "orch.yaml").write_text(
        "version: 1\n"
        "providers:\n"
        "  first: { kind: fake, echo: true }\n"
        "  second: { kind: fake, responses: replies }\n"
        "default_provider: first\n"
        "steps: { a: { prompt: hello, output: a.md } }\n"
    )
    (folder / "replies").mkdir()
    (folder / "replies" / "a.md").write_text("from second\n")


def test_orch_provider_chooses_the_provider_like_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pipeline_with_two_providers(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCH_PROVIDER", "second")
    assert CliRunner().invoke(cli, ["build"]).exit_code == 0
    assert (tmp_path / "a.md").read_text() == "from second\n"
    monkeypatch.setenv("ORCH_PROVIDER", "third")
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 2
    assert "ORCH_PROVIDER) 'third': no such provider" in result.stderr


def test_orch_provider_is_ignored_by_a_pipeline_without_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orch.yaml").write_text(
        "version: 1\nsteps: { a: { run: echo hi > a.txt, output: a.txt } }\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCH_PROVIDER", "openai")
    assert CliRunner().invoke(cli, ["build"]).exit_code == 0


def test_the_api_key_and_a_password_in_the_address_are_secrets() -> None:
    provider = OpenAIProvider(kind="openai", base_url="http://me:pw-123@host:8000/v1")
    settings = resolve("o", provider, {"OPENAI_API_KEY": "sk-1"})
    assert settings.secrets() == ["sk-1", "pw-123"]
    assert resolve("o", OpenAIProvider(kind="openai"), {}).secrets() == []


def test_a_step_name_too_long_for_a_reply_file_validates_and_has_no_reply(
    project: Project,
) -> None:
    name = "x" * 300
    project.pipeline(
        f"""\
        version: 1
        providers: {{ canned: {{ kind: fake, responses: replies }} }}
        steps:
          {name}:
            prompt: hi
            output: a.md
        """
    )
    project.write("replies/other.md", "a reply\n")
    assert project.orch("validate").exit_code == 0
    build = project.orch("build")
    assert build.exit_code == 1
    assert "has no reply for this step" in build.stdout

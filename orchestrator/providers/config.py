"""Provider settings as a call uses them: the pipeline's config, `ORCH_PROVIDER_*` on top, and
each kind's address and API key from the environment.

Precedence: `ORCH_PROVIDER_*` variables (real environment, then dotenv) > the provider's config
in the pipeline > defaults. A `base_url` in the pipeline wins over `OPENAI_BASE_URL`,
`ANTHROPIC_BASE_URL` and `OLLAMA_HOST`, which only replace each kind's default address.
None of these settings enters a step's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.errors import UsageError
from orchestrator.language.spec import DEFAULT_OPTIONS, FakeProvider, Price, Provider

ENV_OVERRIDES: dict[str, tuple[str, type, float]] = {
    "ORCH_PROVIDER_TIMEOUT_S": ("timeout_s", float, 0),
    "ORCH_PROVIDER_CONNECT_TIMEOUT_S": ("connect_timeout_s", float, 0),
    "ORCH_PROVIDER_TOTAL_TIMEOUT_S": ("total_timeout_s", float, 0),
    "ORCH_PROVIDER_MAX_RETRIES": ("max_retries", int, -1),
    "ORCH_PROVIDER_RETRY_AFTER_CAP_S": ("retry_after_cap_s", float, 0),
    "ORCH_PROVIDER_CB_FAILURE_RATE": ("cb_failure_rate", float, 0),
    "ORCH_PROVIDER_CB_MIN_CALLS": ("cb_min_calls", int, 0),
    "ORCH_PROVIDER_CB_WINDOW": ("cb_window", int, 0),
    "ORCH_PROVIDER_CB_COOLDOWN_S": ("cb_cooldown_s", float, 0),
}
"""Variable → (setting, type, a bound the value must exceed)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a kind's server is by default and which variable holds its API key."""

    default_url: str
    url_env: str
    key_env: str | None


ENDPOINTS = {
    "openai": Endpoint("https://api.openai.com/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "anthropic": Endpoint("https://api.anthropic.com", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    "ollama": Endpoint("http://127.0.0.1:11434", "OLLAMA_HOST", None),
}


@dataclass(frozen=True)
class Settings:
    """Everything a provider needs to make calls; the API key is hidden from repr."""

    name: str
    kind: str
    model: str | None
    options: Mapping[str, Any]
    timeout_s: float | None
    connect_timeout_s: float
    total_timeout_s: float
    max_retries: int
    retry_after_cap_s: float
    cb_failure_rate: float
    cb_min_calls: int
    cb_window: int
    cb_cooldown_s: float
    max_concurrency: int | None
    price: Price | None
    base_url: str = ""
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    responses: str | None = None
    echo: bool = False

    def secrets(self) -> list[str]:
        """Values no message may show: the API key and a password in `base_url`."""
        found = [self.api_key] if self.api_key else []
        userinfo = self.base_url.partition("://")[2].partition("/")[0].rpartition("@")[0]
        password = userinfo.partition(":")[2]
        return [*found, password] if password else found


def overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The `ORCH_PROVIDER_*` settings set in `env`; UsageError for a value that is not valid."""
    found: dict[str, Any] = {}
    for variable, (setting, kind, bound) in ENV_OVERRIDES.items():
        text = env.get(variable, "").strip()
        if not text:
            continue
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= bound:
            what = "a whole number" if kind is int else "a number"
            limit = f"at least {int(bound) + 1}" if kind is int else "above 0"
            raise UsageError(f"{variable}={text!r}: expected {what} {limit}")
        found[setting] = value
    return found


def resolve(name: str, provider: Provider, env: Mapping[str, str]) -> Settings:
    """The settings of one declared provider in the given environment."""
    config = {**{key: value for key, value in provider if key != "kind"}, **overrides(env)}
    config["options"] = {**DEFAULT_OPTIONS.get(provider.kind, {}), **provider.options}
    if isinstance(provider, FakeProvider):
        return Settings(name=name, kind=provider.kind, **config)
    endpoint = ENDPOINTS[provider.kind]
    base_url = config.pop("base_url") or _env_url(env.get(endpoint.url_env)) or endpoint.default_url
    key_env = config.pop("api_key_env") or endpoint.key_env
    api_key = (env.get(key_env) or None) if key_env else None
    return Settings(
        name=name,
        kind=provider.kind,
        base_url=base_url.rstrip("/"),
        api_key_env=key_env,
        api_key=api_key,
        **config,
    )


def _env_url(value: str | None) -> str | None:
    """An address from the environment; `OLLAMA_HOST` style `host:port` gets a scheme."""
    if not value:
        return None
    return value if "://" in value else f"http://{value}"


def display_url(url: str) -> str:
    """An address fit to show and record: without any user:password part."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}" if sep else url

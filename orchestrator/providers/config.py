"""Provider settings as a call uses them: the pipeline's config, `ORCH_PROVIDER_*` on top, and
each kind's address and API key from the environment.

Precedence: `ORCH_PROVIDER_*` variables (real environment, then dotenv) > the provider's config
in the pipeline > defaults. A `base_url` in the pipeline wins over `OPENAI_BASE_URL`,
`ANTHROPIC_BASE_URL`, `AZURE_OPENAI_ENDPOINT` and `OLLAMA_HOST` (read as Ollama reads it), which
only replace each kind's default address. Headers written `{env: NAME}` are read here and are
secrets. None of these settings enters a step's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.errors import UsageError
from orchestrator.language.spec import (
    DEFAULT_OPTIONS,
    AzureProvider,
    FakeProvider,
    FromEnv,
    Price,
    Provider,
)

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


OLLAMA_PORT = "11434"

ENDPOINTS = {
    "openai": Endpoint("https://api.openai.com/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "azure": Endpoint("", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"),
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
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    secret_headers: tuple[str, ...] = field(default=(), repr=False)
    """The values of headers read from the environment."""
    deployment: str | None = None
    api_version: str | None = None
    responses: str | None = None
    echo: bool = False

    def secrets(self) -> list[str]:
        """Values no message may show: the API key, headers from the environment and a password
        in `base_url`."""
        found = [self.api_key] if self.api_key else []
        found += [value for value in self.secret_headers if value]
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
    base_url = config.pop("base_url") or _env_url(provider.kind, env.get(endpoint.url_env))
    base_url = base_url or endpoint.default_url
    if not base_url and isinstance(provider, AzureProvider):
        raise UsageError(
            f"provider '{name}' (azure) has no address: set its base_url or AZURE_OPENAI_ENDPOINT"
        )
    key_env = config.pop("api_key_env") or endpoint.key_env
    api_key = (env.get(key_env) or None) if key_env else None
    headers, secret = _headers(config.pop("headers"), env)
    return Settings(
        name=name,
        kind=provider.kind,
        base_url=base_url.rstrip("/"),
        api_key_env=key_env,
        api_key=api_key,
        headers=headers,
        secret_headers=secret,
        **config,
    )


def _headers(
    declared: Mapping[str, str | FromEnv], env: Mapping[str, str]
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The headers to send, and the values read from the environment (secrets). A header whose
    variable is not set is not sent."""
    headers: dict[str, str] = {}
    secret: list[str] = []
    for name, value in declared.items():
        if isinstance(value, str):
            headers[name] = value
        elif env.get(value.env):
            headers[name] = secret_value = env[value.env].strip()
            secret.append(secret_value)
    return headers, tuple(secret)


def _env_url(kind: str, value: str | None) -> str | None:
    """An address from the environment: `OLLAMA_HOST` as Ollama reads it; for the other kinds
    an address without a scheme gets `http://`."""
    if kind == "ollama":
        return ollama_host(value or "") if (value or "").strip() else None
    if not value:
        return None
    return value if "://" in value else f"http://{value}"


def ollama_host(value: str) -> str:
    """The address of an `OLLAMA_HOST` value, read as Ollama's client reads it: quotes and
    spaces trimmed, `http` by default (port 11434; 80 or 443 with an explicit scheme), a host
    alone or `:port` alone, a path kept; the unspecified address `0.0.0.0` (or `::`), which a
    server listens on, and an empty host connect to the loopback address."""
    text = value.strip().strip("\"'").strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, port = "http", text, OLLAMA_PORT
    else:
        port = {"http": "80", "https": "443"}.get(scheme, OLLAMA_PORT)
    hostport, slash, path = rest.partition("/")
    host, port = _split_host_port(hostport, port)
    return f"{scheme}://{_join_host_port(_loopback(host), port)}{slash}{path}".rstrip("/")


def _split_host_port(hostport: str, default_port: str) -> tuple[str, str]:
    """Host and port as Go's net.SplitHostPort gives them, else the whole text as the host; a
    port that is not a number from 0 to 65535 is the default port."""
    host, port = hostport, default_port
    if hostport.startswith("["):
        inside, _, after = hostport[1:].partition("]")
        host = inside
        if after.startswith(":"):
            port = after[1:]
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    if not (port.isdigit() and int(port) <= 65535):
        port = default_port
    return host, port


def _loopback(host: str) -> str:
    """The address to connect to for a host a server listens on."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host.strip(":0") == "" and ":" in host:
        return "::1"
    return host


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def display_url(url: str) -> str:
    """An address fit to show and record: without any user:password part."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}" if sep else url

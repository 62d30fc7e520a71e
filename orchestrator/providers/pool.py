"""The providers of one build: settings resolved once per provider, a shared set of httpx
clients, one circuit breaker per (kind, base_url, model) and one concurrency limit per
provider."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.providers.base import ProviderClient, ProviderError
from orchestrator.providers.breaker import CircuitBreaker, Policy
from orchestrator.providers.config import Settings, display_url, resolve

if TYPE_CHECKING:
    import httpx

    from orchestrator.language.spec import Provider as ProviderSpec
    from orchestrator.providers.batch import Batcher
    from orchestrator.providers.budget import Budget
    from orchestrator.providers.wire import WireFormat


SHARDS = 8
"""httpx clients the requests are spread over: httpcore's connection pool does work in the
square of its open connections on every request, so many small pools beat one large one."""


class Providers:
    """Gives each llm step its configured provider; `aclose` when the build ends."""

    def __init__(
        self,
        specs: Mapping[str, ProviderSpec],
        env: Mapping[str, str],
        workdir: Path,
        *,
        offline: bool = False,
        budget: Budget | None = None,
        batch: bool = False,
    ) -> None:
        self.specs = specs
        self.env = env
        self.workdir = workdir
        self.offline = offline
        self.budget = budget
        """The build's spending limit (`--max-cost`), shared by every call."""
        self.batch = batch
        """Whether steps' first calls go through the batch APIs (`--batch`)."""
        self._settings: dict[str, Settings] = {}
        self._providers: dict[str, ProviderClient] = {}
        self._breakers: dict[tuple[str, str, str | None], CircuitBreaker] = {}
        self._clients: list[httpx.AsyncClient] = []
        self._turn = 0
        self._batchers: list[Batcher] = []

    def settings(self, name: str) -> Settings:
        """The resolved settings of a declared provider."""
        if name not in self._settings:
            self._settings[name] = resolve(name, self.specs[name], self.env)
        return self._settings[name]

    def get(self, name: str) -> ProviderClient:
        """The provider called `name`; ProviderError `offline` for a network one when offline."""
        provider = self._providers.get(name)
        if provider is None:
            provider = self._providers[name] = self._create(self.settings(name))
        if self.offline and provider.kind != "fake":
            raise ProviderError(
                "offline",
                f"needs a call to provider '{name}' ({provider.kind}), and offline mode"
                " (--offline or ORCH_OFFLINE) forbids it",
                retry=False,
            )
        return provider

    def _create(self, settings: Settings) -> ProviderClient:
        client = self._client(settings)
        return self._batched(client) if self.batch else client

    def _batched(self, client: ProviderClient) -> ProviderClient:
        """`client` behind the batcher of its kind, or noting that its kind has none."""
        from orchestrator.providers.batch import BatchConfig, Batcher, Unbatched
        from orchestrator.providers.batchapi import api_for
        from orchestrator.providers.http import HttpProvider
        from orchestrator.store.layout import StateFolder

        api = api_for(client.kind)
        if api is None or not isinstance(client, HttpProvider):
            return Unbatched(client)
        config = BatchConfig.from_env(StateFolder(self.workdir).batches, self.env)
        batcher = Batcher(client, api, config)
        self._batchers.append(batcher)
        return batcher

    def _client(self, settings: Settings) -> ProviderClient:
        if settings.kind == "fake":
            from orchestrator.providers.fake import FakeProvider

            return FakeProvider(settings, self.workdir)
        from orchestrator.providers.http import HttpProvider

        slots = asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency else None
        return HttpProvider(
            settings,
            _wire(settings),
            self._http_client,
            lambda model: self._breaker(settings, model),
            slots,
        )

    def _breaker(self, settings: Settings, model: str | None) -> CircuitBreaker:
        key = (settings.kind, display_url(settings.base_url), model)
        breaker = self._breakers.get(key)
        if breaker is None:
            policy = Policy(
                settings.cb_failure_rate,
                settings.cb_min_calls,
                settings.cb_window,
                settings.cb_cooldown_s,
            )
            breaker = CircuitBreaker(policy)
            self._breakers[key] = breaker
        return breaker

    def _http_client(self) -> httpx.AsyncClient:
        """The next client of the shared set, in turn."""
        if not self._clients:
            import httpx

            verify = httpx.create_ssl_context() if self._uses_tls() else False
            self._clients = [
                httpx.AsyncClient(verify=verify, follow_redirects=False) for _ in range(SHARDS)
            ]
        self._turn = (self._turn + 1) % SHARDS
        return self._clients[self._turn]

    def _uses_tls(self) -> bool:
        """Whether any provider is reached over https (creating a TLS context takes time)."""
        names = [name for name, spec in self.specs.items() if spec.kind != "fake"]
        return any(not self.settings(name).base_url.startswith("http://") for name in names)

    async def aclose(self) -> None:
        """Stop polling batches and close the shared clients."""
        for batcher in self._batchers:
            await batcher.aclose()
        for client in self._clients:
            await client.aclose()
        self._clients = []


def _wire(settings: Settings) -> WireFormat:
    """The wire format of a provider's kind, with the provider's own headers."""
    headers = settings.headers
    if settings.kind == "openai":
        from orchestrator.providers.openai import OpenAIWire

        return OpenAIWire(headers)
    if settings.kind == "azure":
        from orchestrator.providers.azure import AzureWire

        assert settings.api_version is not None
        return AzureWire(settings.deployment, settings.api_version, headers)
    if settings.kind == "anthropic":
        from orchestrator.providers.anthropic import AnthropicWire

        return AnthropicWire(headers)
    from orchestrator.providers.ollama import OllamaWire

    return OllamaWire(headers)

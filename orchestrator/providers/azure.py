"""Azure OpenAI: chat completions on a deployment,
`POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version=...` with the key in
an `api-key` header. Bodies and replies are OpenAI's."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from orchestrator.providers.openai import OpenAIWire
from orchestrator.providers.wire import join, with_custom


class AzureWire(OpenAIWire):
    """The chat-completions wire format on an Azure OpenAI resource."""

    kind = "azure"

    def __init__(
        self, deployment: str | None, api_version: str, custom: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(custom)
        self.deployment = deployment
        self.api_version = api_version

    def url(self, base_url: str, model: str | None) -> str:
        deployment = quote(self.deployment or model or "", safe="")
        path = f"/openai/deployments/{deployment}/chat/completions"
        return join(base_url, path, {"api-version": self.api_version})

    def headers(self, api_key: str | None) -> dict[str, str]:
        return with_custom({"api-key": api_key} if api_key else {}, self.custom)

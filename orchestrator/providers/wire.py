"""What an HTTP provider kind defines: its URL, headers, request body and reply parsing; and
the small helpers the kinds share to read a decoded JSON reply defensively."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from orchestrator.providers.base import ChatRequest, ProviderError, Reply


class WireFormat(Protocol):
    """One HTTP API's shape."""

    kind: str

    def url(self, base_url: str, model: str | None) -> str:
        """The endpoint a chat request for `model` goes to."""
        ...

    def headers(self, api_key: str | None) -> dict[str, str]:
        """Headers of every request, authentication and the provider's own headers included."""
        ...

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of a request."""
        ...

    def parse(self, payload: Any) -> Reply:
        """The reply in a decoded 2xx response; ProviderError when it holds none."""
        ...

    def structured(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """Request fields that ask for a reply satisfying `schema` (none if the kind cannot)."""
        ...


def join(base_url: str, path: str, query: Mapping[str, str] | None = None) -> str:
    """`path` appended to the path of `base_url`, whose query is kept; `query` adds parameters
    the base does not already set."""
    parts = urlsplit(base_url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    given = {name for name, _ in params}
    params += [(name, value) for name, value in (query or {}).items() if name not in given]
    full = parts.path.rstrip("/") + path
    return urlunsplit(parts._replace(path=full, query=urlencode(params, safe=",:/")))


def with_custom(headers: dict[str, str], custom: Mapping[str, str]) -> dict[str, str]:
    """The wire format's headers with the provider's own on top (names compared in any case)."""
    names = {name.lower() for name in custom}
    return {**{k: v for k, v in headers.items() if k.lower() not in names}, **custom}


def invalid(message: str) -> ProviderError:
    """A reply that is not what the API promises."""
    return ProviderError("invalid_response", message)


def field(payload: Any, name: str, kind: type) -> Any:
    """`payload[name]` when payload is an object and the value has the expected type."""
    value = payload.get(name) if isinstance(payload, dict) else None
    if not isinstance(value, kind):
        raise invalid(f"the reply has no '{name}' {'list' if kind is list else 'object'}")
    return value


def number(payload: Any, name: str) -> int:
    """A token count, 0 when absent or not a number."""
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def error_message(payload: Any) -> str | None:
    """The human message in an error body, in any of the kinds' shapes."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message") or error.get("type")
    return str(error) if error else None

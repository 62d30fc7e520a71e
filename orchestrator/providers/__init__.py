"""LLM providers: the protocol (`base`), the HTTP retry loop (`http`) with its circuit breaker
(`breaker`), the wire formats (`openai`, `azure`, `anthropic`, `ollama`), the offline `fake`,
settings (`config`) and the per-build pool (`pool`).

The public names are imported on first use, so importing a submodule (`config` while a pipeline
is compiled) does not pull in the pool and asyncio."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.providers.base import Call, ChatRequest, ProviderError, Reply, Usage
    from orchestrator.providers.pool import Providers

_HOMES = {
    "Call": "base",
    "ChatRequest": "base",
    "ProviderError": "base",
    "Reply": "base",
    "Usage": "base",
    "Providers": "pool",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module when first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


__all__ = ["Call", "ChatRequest", "ProviderError", "Providers", "Reply", "Usage"]

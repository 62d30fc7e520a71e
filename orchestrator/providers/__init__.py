"""LLM providers: the protocol (`base`), the HTTP retry loop (`http`) with its circuit breaker
(`breaker`), the wire formats (`openai`, `anthropic`, `ollama`), the offline `fake`, settings
(`config`) and the per-build pool (`pool`)."""

from .base import Call, ChatRequest, ProviderError, Reply, Usage
from .pool import Providers

__all__ = ["Call", "ChatRequest", "ProviderError", "Providers", "Reply", "Usage"]

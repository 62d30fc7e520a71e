"""The retry rules of the official OpenAI and Anthropic SDKs, as orch's retry loop applies them.

- `x-should-retry: true|false` from the server decides, whatever the status;
- else 408, 409, 429 and 5xx are retried, no other 4xx;
- the wait is the server's `retry-after-ms` / `retry-after` when it is above 0; a wait of 0, a
  date in the past or an unreadable value gets the normal backoff: 0.5 s * 2^n, capped at 8 s;
- non-streaming Anthropic calls get at least the time the SDK expects of their `max_tokens`.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from orchestrator.providers.base import ProviderError

FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 8.0
RETRIED_STATUSES = frozenset({408, 409, 429})
DEFAULT_READ_TIMEOUT_S = 120.0
"""The read timeout when neither the step nor the provider sets `timeout_s`."""
SECONDS_PER_TOKEN = 3600 / 128_000
"""The Anthropic SDK's expected generation time: an hour for 128k output tokens."""
LONGEST_EXPECTED_S = 600.0
"""Past ten minutes the Anthropic SDK refuses a non-streaming call; orch waits that long."""


class Delay(float):
    """Seconds to wait before the next attempt; `asked` when the server said how long."""

    asked: bool = False


def server_says(headers: httpx.Headers) -> bool | None:
    """The server's own retry decision (`x-should-retry`), None when it gives none."""
    return {"true": True, "false": False}.get(headers.get("x-should-retry", "").strip().lower())


def status_retried(status: int) -> bool:
    """Whether a status is worth another attempt when the server does not say."""
    return status in RETRIED_STATUSES or status >= 500


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asks to wait (`retry-after-ms`, else `retry-after` in seconds or as an
    HTTP date); None when it asks for none, for 0 or less, or says something unreadable."""
    seconds = _milliseconds(headers.get("retry-after-ms"))
    if seconds is None:
        seconds = _seconds(headers.get("retry-after"))
    return seconds if seconds is not None and seconds > 0 else None


def _milliseconds(value: str | None) -> float | None:
    try:
        return float(value) / 1000 if value else None
    except ValueError:
        return None


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def delays() -> Generator[Delay, ProviderError, None]:
    """backoff's wait generator: the server's wait when it gave one, else exponential."""
    error = yield  # type: ignore[misc]  # backoff primes the generator with None
    exponent = 0
    while True:
        if error.retry_after is not None:
            delay = Delay(error.retry_after)
            delay.asked = True
        else:
            delay = Delay(min(LONGEST_WAIT_S, FIRST_WAIT_S * 2**exponent))
            exponent += 1
        error = yield delay


def jitter(delay: float) -> float:
    """Between half and all of our own wait; a little on top of a wait the server asked for."""
    if getattr(delay, "asked", False):
        return delay + random.uniform(0, min(1.0, 0.1 * delay))
    return random.uniform(delay / 2, delay)


def read_timeout(kind: str, options: Mapping[str, Any], configured: float | None) -> float:
    """The read timeout of one request: the configured one, else 120 s, or for `anthropic` the
    time its SDK expects of `max_tokens` when that is longer (up to ten minutes)."""
    if configured is not None:
        return configured
    if kind != "anthropic":
        return DEFAULT_READ_TIMEOUT_S
    max_tokens = options.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return DEFAULT_READ_TIMEOUT_S
    expected = min(LONGEST_EXPECTED_S, SECONDS_PER_TOKEN * max_tokens)
    return max(DEFAULT_READ_TIMEOUT_S, expected)

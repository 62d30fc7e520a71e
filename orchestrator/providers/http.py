"""The one retry loop every HTTP provider kind goes through.

An attempt checks the circuit breaker, takes a concurrency slot, sends one request on the shared
httpx client and classifies what came back. `backoff` retries the attempts that may succeed
later, by the SDKs' rules (`retry`): connect errors, timeouts, unreadable replies, and the
statuses the server or `x-should-retry` says are worth another try. A server's wait above
`retry_after_cap_s` fails the call saying until when. `max_retries` and `total_timeout_s` bound
the loop; an attempt the open breaker refuses is not sent and not counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import backoff
import httpx

from orchestrator.providers.base import RETRYABLE, Call, ChatRequest, ProviderError, Reply
from orchestrator.providers.breaker import CircuitBreaker
from orchestrator.providers.config import display_url
from orchestrator.providers.retry import (
    delays,
    jitter,
    read_timeout,
    retry_after,
    server_says,
    status_retried,
)
from orchestrator.providers.wire import WireFormat, error_message

if TYPE_CHECKING:
    from orchestrator.providers.config import Settings

__all__ = ["HttpProvider", "retry_after"]
_MESSAGE_LIMIT = 300
FETCH_TIMEOUT_S = 120.0
"""Read timeout of a batch or file request when the provider sets none."""


class HttpProvider:
    """A provider reached over HTTP, in one of the wire formats."""

    def __init__(
        self,
        settings: Settings,
        wire: WireFormat,
        client: Callable[[], httpx.AsyncClient],
        breaker: Callable[[str | None], CircuitBreaker],
        slots: asyncio.Semaphore | None,
    ) -> None:
        self.name = settings.name
        self.kind = settings.kind
        self.settings = settings
        self.wire = wire
        self.client = client
        self.breaker = breaker
        self.slots = slots
        self.where = display_url(settings.base_url)

    async def complete(self, request: ChatRequest, call: Call) -> Reply:
        """The reply to `request`, retrying what may pass on another attempt."""
        attempts = 0
        budget = self.settings.total_timeout_s
        deadline = time.monotonic() + budget

        async def attempt() -> Reply:
            nonlocal attempts
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderError(
                    "timeout",
                    f"the call's time budget (total_timeout_s {budget:g} s) is spent",
                    retry=False,
                )
            breaker = self.breaker(request.model)
            if not breaker.allow():
                raise self._breaker_open(breaker, request)
            attempts += 1
            return await self._slotted(
                request, call, attempts, breaker, self._timeout(request, remaining)
            )

        def retrying(details: Mapping[str, Any]) -> None:
            error: ProviderError = details["exception"]
            call.emit(
                "llm.retry",
                "warning",
                provider=self.name,
                model=request.model,
                attempt=details["tries"],
                kind=error.kind,
                message=error.message,
                wait_s=round(details["wait"], 3),
            )

        with_retries = backoff.on_exception(
            cast("Callable[..., Generator[float, None, None]]", delays),
            ProviderError,
            max_tries=self.settings.max_retries + 1,
            max_time=budget,
            giveup=lambda error: _final(error) or time.monotonic() >= deadline,
            jitter=lambda delay: min(jitter(delay), max(0.0, deadline - time.monotonic())),
            on_backoff=retrying,
            raise_on_giveup=True,
            logger=None,
        )(attempt)
        try:
            reply: Reply = await with_retries()
        except ProviderError as error:
            error.meta["calls"] = attempts
            raise
        return replace(reply, attempts=attempts)

    def _timeout(self, request: ChatRequest, remaining: float) -> httpx.Timeout:
        """Connect and read timeouts of one attempt, within what is left of the call's budget."""
        configured = request.timeout_s or self.settings.timeout_s
        read = min(read_timeout(self.kind, request.options, configured), remaining)
        connect = min(self.settings.connect_timeout_s, read)
        return httpx.Timeout(read, connect=connect)

    async def _slotted(
        self,
        request: ChatRequest,
        call: Call,
        number: int,
        breaker: CircuitBreaker,
        timeout: httpx.Timeout,
    ) -> Reply:
        if self.slots is None:
            return await self._observed(request, call, number, breaker, timeout)
        async with self.slots:
            return await self._observed(request, call, number, breaker, timeout)

    async def _observed(
        self,
        request: ChatRequest,
        call: Call,
        number: int,
        breaker: CircuitBreaker,
        timeout: httpx.Timeout,
    ) -> Reply:
        """One request, with its events and its effect on the breaker."""
        identity: dict[str, Any] = {"provider": self.name, "model": request.model}
        call.emit("llm.request", **identity, attempt=number)
        started = time.monotonic()
        try:
            reply = await self._send(request, timeout)
        except ProviderError as error:
            if error.kind in RETRYABLE:  # the server is in trouble; anything else is an answer
                if breaker.failed():
                    call.emit(
                        "circuit.opened",
                        "warning",
                        **identity,
                        kind=self.kind,
                        base_url=self.where,
                        failures=breaker.trip.failures,
                        calls=breaker.trip.calls,
                        rate=breaker.trip.rate,
                        cooldown_s=breaker.cooldown_s,
                    )
            else:
                self._succeeded(breaker, call, identity)
            raise
        self._succeeded(breaker, call, identity)
        call.emit(
            "llm.response",
            **identity,
            attempt=number,
            duration_s=round(time.monotonic() - started, 3),
            finish_reason=reply.finish_reason,
            tokens=reply.usage.as_dict(),
        )
        return reply

    def _succeeded(self, breaker: CircuitBreaker, call: Call, identity: dict[str, Any]) -> None:
        if breaker.succeeded():
            call.emit("circuit.closed", **identity, kind=self.kind, base_url=self.where)

    async def _send(self, request: ChatRequest, timeout: httpx.Timeout) -> Reply:
        """One HTTP request and its classified outcome, with the API key out of any message."""
        try:
            return await self._exchange(request, timeout)
        except ProviderError as error:
            redacted = self._redact(error.message)
            if redacted == error.message:
                raise
            raise ProviderError(
                error.kind, redacted, retry=error.retry, retry_after=error.retry_after
            ) from None

    async def _exchange(self, request: ChatRequest, timeout: httpx.Timeout) -> Reply:
        try:
            response = await self.client().post(
                self.wire.url(self.settings.base_url, request.model),
                json=self._body(request),
                headers=self.wire.headers(self.settings.api_key),
                timeout=timeout,
            )
        except httpx.ConnectTimeout as exc:
            raise ProviderError(
                "connection",
                f"cannot connect to {self.where} within {timeout.connect:g} s (connect_timeout_s)",
            ) from exc
        except httpx.TimeoutException as exc:
            raise ProviderError(
                "timeout", f"no reply from {self.where} within {timeout.read:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError("connection", self._connection_message(exc)) from exc
        if response.status_code >= 400:
            raise self._status_error(response)
        if _is_stream(response):
            raise ProviderError(
                "unexpected_reply",
                "the server sent a stream of events (text/event-stream), not one JSON reply;"
                " remove the 'stream' option",
                retry=False,
            )
        try:
            payload = response.json()
        except ValueError as exc:
            excerpt = self._redact(response.text[:80])
            raise ProviderError("invalid_response", f"the reply is not JSON: {excerpt!r}") from exc
        try:
            return self.wire.parse(payload)
        except (LookupError, TypeError, AttributeError, ValueError) as exc:
            raise ProviderError(
                "invalid_response", f"the reply has an unexpected shape ({type(exc).__name__})"
            ) from exc

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body `request` goes out with (a batch carries the same)."""
        return self._body(request)

    async def fetch(self, method: str, url: str, **sent: Any) -> httpx.Response:
        """One request to another endpoint of the API (batches, files), authenticated as the
        chat calls are; ProviderError for a transport failure or an error status, the API key
        kept out of its message."""
        read = self.settings.timeout_s or FETCH_TIMEOUT_S
        timeout = httpx.Timeout(read, connect=min(self.settings.connect_timeout_s, read))
        headers = {**self.wire.headers(self.settings.api_key), **sent.pop("headers", {})}
        try:
            response = await self.client().request(
                method, url, headers=headers, timeout=timeout, **sent
            )
        except httpx.TimeoutException as exc:
            raise ProviderError("timeout", f"no reply from {self.where} within {read:g} s") from exc
        except httpx.HTTPError as exc:
            raise ProviderError("connection", self._connection_message(exc)) from exc
        if response.status_code >= 400:
            error = self._status_error(response)
            raise ProviderError(error.kind, self._redact(error.message), retry=error.retry)
        return response

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        """The request body; a schema asked for the kind's way, unless options say otherwise."""
        body = self.wire.body(request)
        if request.schema is None:
            return body
        return {**self.wire.structured(request.schema), **body}

    def _connection_message(self, exc: httpx.HTTPError) -> str:
        if isinstance(exc, httpx.ConnectError):
            return f"cannot connect to {self.where}: {self._redact(str(exc)) or 'refused'}"
        detail = self._redact(str(exc)) or type(exc).__name__
        return f"the connection to {self.where} failed: {detail}"

    def _status_error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        try:
            said = error_message(response.json())
        except ValueError:
            said = response.text.strip()[:_MESSAGE_LIMIT] or None
        message = f"HTTP {status} {response.reason_phrase}" + (f": {said}" if said else "")
        message = self._redact(message)[:_MESSAGE_LIMIT]
        kind = _status_kind(status)
        if status in (401, 403):
            message += self._key_hint()
        verdict = server_says(response.headers)
        if verdict is not None:
            message += f" (x-should-retry: {str(verdict).lower()})"
        if not (status_retried(status) if verdict is None else verdict):
            return ProviderError(kind, message, retry=False)
        wait = retry_after(response.headers)
        if wait is not None and wait > self.settings.retry_after_cap_s:
            until = datetime.now(UTC) + timedelta(seconds=wait)
            return ProviderError(
                kind,
                f"{message}; the server asks to wait until {until:%Y-%m-%dT%H:%M:%SZ}"
                f" ({wait:g} s), more than the {self.settings.retry_after_cap_s:g} s cap"
                " (retry_after_cap_s)",
                retry=False,
            )
        return ProviderError(kind, message, retry=True, retry_after=wait)

    def _key_hint(self) -> str:
        variable = self.settings.api_key_env
        if variable is None:
            return ""
        if self.settings.api_key is None:
            return f" (no API key: {variable} is not set)"
        return f" (check the API key in {variable})"

    def _breaker_open(self, breaker: CircuitBreaker, request: ChatRequest) -> ProviderError:
        remaining = breaker.remaining_s()
        when = f"calls resume in {remaining:.1f} s" if remaining else "a probe call is under way"
        return ProviderError(
            "circuit_breaker",
            f"the circuit breaker for {self.kind} {self.where} {request.model} is open:"
            f" {breaker.trip.failures} of the last {breaker.trip.calls} attempts failed; {when}",
            retry=False,
        )

    def _redact(self, text: str) -> str:
        """`text` without the API key or a password in the address."""
        for secret in self.settings.secrets():
            text = text.replace(secret, "***")
        return text


def _is_stream(response: httpx.Response) -> bool:
    """Whether a reply is server-sent events, which a request for one reply never expects."""
    if "text/event-stream" in response.headers.get("content-type", ""):
        return True
    return response.content.lstrip().startswith((b"data:", b"event:"))


def _final(error: Exception) -> bool:
    return not (isinstance(error, ProviderError) and error.retry)


def _status_kind(status: int) -> str:
    """The failure kind of an HTTP error status."""
    fallback = "server" if status >= 500 or status == 409 else "client"
    return {408: "timeout", 429: "rate_limit"}.get(status, fallback)

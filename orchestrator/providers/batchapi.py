"""The batch APIs: OpenAI's Files and Batches (`POST /files` with a JSONL of requests, then
`POST /batches`) and Anthropic's Message Batches (`POST /v1/messages/batches`). Each submits
the bodies of several chat requests as one batch, tells whether it ended, and reads each
request's outcome: a reply parsed by the kind's wire format, exactly as a normal call's, or
the ProviderError that fails just that request."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.providers.base import ProviderError, Reply
from orchestrator.providers.wire import error_message
from orchestrator.store.batches import BATCH_ID

if TYPE_CHECKING:
    from orchestrator.providers.http import HttpProvider

Outcome = Reply | ProviderError
"""What one request of a batch came to."""
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class State:
    """A batch as the API last described it."""

    ended: bool
    status: str
    payload: Mapping[str, Any]

    def missing(self) -> ProviderError:
        """The failure of a request the ended batch gave no result for."""
        kind = {"expired": "timeout", "failed": "client"}.get(self.status, "server")
        return ProviderError(
            kind, f"the batch ended ({self.status}) without a result for this request", retry=False
        )


class BatchApi(Protocol):
    """One kind's batch endpoints."""

    async def submit(self, http: HttpProvider, bodies: Mapping[str, dict[str, Any]]) -> str:
        """Submit custom_id → request body; the batch id."""
        ...

    async def state(self, http: HttpProvider, batch_id: str) -> State:
        """Where the batch is."""
        ...

    async def results(self, http: HttpProvider, batch_id: str, state: State) -> dict[str, Outcome]:
        """custom_id → outcome, for the requests the ended batch has a result for."""
        ...


def api_for(kind: str) -> BatchApi | None:
    """The batch API of a provider kind; None for a kind without one."""
    if kind == "openai":
        return OpenAIBatches()
    if kind == "anthropic":
        return AnthropicBatches()
    return None


class OpenAIBatches:
    """Files API upload of a JSONL, then a batch of `/v1/chat/completions` requests."""

    async def submit(self, http: HttpProvider, bodies: Mapping[str, dict[str, Any]]) -> str:
        lines = [
            {"custom_id": custom_id, "method": "POST", "url": CHAT_PATH, "body": body}
            for custom_id, body in bodies.items()
        ]
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        base = http.settings.base_url
        uploaded = await http.fetch(
            "POST",
            f"{base}/files",
            data={"purpose": "batch"},
            files={"file": ("orch-batch.jsonl", data, "application/jsonl")},
        )
        created = await http.fetch(
            "POST",
            f"{base}/batches",
            json={
                "input_file_id": _identifier(_json(uploaded.text), "id"),
                "endpoint": CHAT_PATH,
                "completion_window": "24h",
            },
        )
        return _identifier(_json(created.text), "id")

    async def state(self, http: HttpProvider, batch_id: str) -> State:
        response = await http.fetch("GET", f"{http.settings.base_url}/batches/{batch_id}")
        payload = _json(response.text)
        status = str(payload.get("status"))
        return State(status in ("completed", "failed", "expired", "cancelled"), status, payload)

    async def results(self, http: HttpProvider, batch_id: str, state: State) -> dict[str, Outcome]:
        found: dict[str, Outcome] = {}
        for name in ("error_file_id", "output_file_id"):  # outputs win over errors
            file_id = state.payload.get(name)
            if not isinstance(file_id, str) or not BATCH_ID.match(file_id):
                continue
            url = f"{http.settings.base_url}/files/{file_id}/content"
            for line in _lines((await http.fetch("GET", url)).text):
                custom_id = line.get("custom_id")
                if isinstance(custom_id, str):
                    found[custom_id] = _openai_outcome(http, line, batch_id)
        return found


def _openai_outcome(http: HttpProvider, line: dict[str, Any], batch_id: str) -> Outcome:
    """`{custom_id, response: {status_code, body}, error}` → a reply or a failure."""
    response = line.get("response")
    error = line.get("error")
    if isinstance(response, dict):
        status = response.get("status_code")
        body = response.get("body")
        if isinstance(status, int) and 200 <= status < 300:
            return parsed(http, body, batch_id)
        if isinstance(status, int):
            said = error_message(body) or "no message"
            return ProviderError(
                _status_kind(status), f"the batch answered HTTP {status}: {said}", retry=False
            )
    message = error.get("message") if isinstance(error, dict) else None
    return ProviderError(
        "server", f"the batch request failed: {message or 'no message'}", retry=False
    )


class AnthropicBatches:
    """Message Batches: `{requests: [{custom_id, params}]}`, results as JSONL."""

    async def submit(self, http: HttpProvider, bodies: Mapping[str, dict[str, Any]]) -> str:
        requests = [{"custom_id": custom_id, "params": body} for custom_id, body in bodies.items()]
        created = await http.fetch("POST", self._url(http), json={"requests": requests})
        return _identifier(_json(created.text), "id")

    async def state(self, http: HttpProvider, batch_id: str) -> State:
        response = await http.fetch("GET", f"{self._url(http)}/{batch_id}")
        payload = _json(response.text)
        status = str(payload.get("processing_status"))
        return State(status == "ended", status, payload)

    async def results(self, http: HttpProvider, batch_id: str, state: State) -> dict[str, Outcome]:
        given = _same_origin(state.payload.get("results_url"), http.settings.base_url)
        url = given or f"{self._url(http)}/{batch_id}/results"
        found: dict[str, Outcome] = {}
        for line in _lines((await http.fetch("GET", url)).text):
            custom_id = line.get("custom_id")
            if isinstance(custom_id, str):
                found[custom_id] = _anthropic_outcome(http, line.get("result"), batch_id)
        return found

    @staticmethod
    def _url(http: HttpProvider) -> str:
        return f"{http.settings.base_url}/v1/messages/batches"


def _anthropic_outcome(http: HttpProvider, result: Any, batch_id: str) -> Outcome:
    """`{type: succeeded|errored|canceled|expired, message|error}` → a reply or a failure."""
    kind = result.get("type") if isinstance(result, dict) else None
    if kind == "succeeded":
        return parsed(http, result.get("message"), batch_id)
    if kind == "errored":
        error = result.get("error")
        inner = error.get("error") if isinstance(error, dict) else None
        type_ = inner.get("type") if isinstance(inner, dict) else None
        said = error_message(error) or "no message"
        failure = "client" if type_ == "invalid_request_error" else "server"
        return ProviderError(failure, f"the batch request errored: {said}", retry=False)
    if kind == "expired":
        return ProviderError("timeout", "the batch expired before this request ran", retry=False)
    return ProviderError("server", f"the batch request ended as {kind!r}", retry=False)


def parsed(http: HttpProvider, payload: Any, batch_id: str) -> Outcome:
    """A result's body read by the wire format, with the checks of a normal reply."""
    try:
        reply = http.wire.parse(payload)
    except ProviderError as error:
        return error
    except (LookupError, TypeError, AttributeError, ValueError) as exc:
        return ProviderError(
            "invalid_response", f"the reply has an unexpected shape ({type(exc).__name__})"
        )
    return replace(reply, batch=batch_id)


def _json(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise ProviderError("invalid_response", "the batch API's reply is not JSON") from exc
    if not isinstance(payload, dict):
        raise ProviderError("invalid_response", "the batch API's reply is not an object")
    return payload


def _identifier(payload: dict[str, Any], name: str) -> str:
    """An id the API gave, checked before it goes into a URL or a record."""
    value = payload.get(name)
    if not isinstance(value, str) or not BATCH_ID.match(value):
        raise ProviderError("invalid_response", f"the batch API's reply has no valid '{name}'")
    return value


def _lines(text: str) -> list[dict[str, Any]]:
    """The objects of a JSONL text; lines that are not one are skipped."""
    found = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _same_origin(url: Any, base_url: str) -> str | None:
    """`url` when it is on the provider's own server (the key never goes elsewhere)."""
    if not isinstance(url, str):
        return None
    origin = base_url.split("://", 1)[-1].split("/", 1)[0]
    scheme = base_url.split("://", 1)[0]
    return url if url.startswith(f"{scheme}://{origin}/") else None


def _status_kind(status: int) -> str:
    fallback = "server" if status >= 500 else "client"
    return {408: "timeout", 429: "rate_limit"}.get(status, fallback)

"""Real HTTP test server speaking the OpenAI, Anthropic and Ollama chat wire formats.

Tests and benchmarks point LLM provider clients at it over real sockets on 127.0.0.1::

    with LlmServer() as server:
        server.script(rate_limited(seconds=1), status(500))  # next two requests fail
        server.script_for("step-b", DROP)  # first request whose body mentions "step-b"
        server.always(slow(5))  # every request after the scripted ones hangs
        server.fail_fraction(0.3, status(500), seed=7)  # or: 30 % of them fail, reproducibly
        server.reply = lambda fmt, body: "hello"
        ...  # use server.openai_url / server.anthropic_url / server.ollama_url
        server.wait_for_count(3)
        assert server.requests[0].body["model"] == "gpt-x"

Routes (POST, JSON bodies): ``/v1/chat/completions`` and ``/chat/completions`` (OpenAI),
``/v1/messages`` (Anthropic), ``/api/chat`` (Ollama); any other path gets a 404.
Each request takes a fault from the first matching ``script_for`` queue, else from the
``script`` queue, else the ``fail_fraction`` fault when its draw says so, else the ``always``
fault; with none it gets a normal reply after ``latency``.

Batch APIs (in memory): OpenAI ``POST /v1/files`` (multipart), ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``GET /v1/files/{id}/content``; Anthropic ``POST /v1/messages/batches``,
``GET /v1/messages/batches/{id}`` and ``.../results``. A batch ends on its ``batch_polls``-th
poll; its requests are answered as normal ones, except those ``batch_fail(marker)`` names
(errored); ``batch_refuse(code)`` refuses the next submissions with that status.

Benchmarks: ``python tests/llm_server.py --latency 0.1 [--port 0]`` prints the base URL as one
line on stdout, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import hashlib
import itertools
import json
import random
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

Reply = str | Callable[[str, dict[str, Any]], str]
ROUTES: dict[str, str] = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/messages": "anthropic",
    "/api/chat": "ollama",
}
AZURE_ROUTE = re.compile(r"/openai/deployments/[^/]+/chat/completions")
"""Azure OpenAI's chat completions on a deployment: the OpenAI wire format."""
_OPENAI_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 408: "timeout"}
_OPENAI_ERRORS |= {409: "conflict", 429: "rate_limit_exceeded"}
_MALFORMED = {"openai": b'{"choices": [', "anthropic": b'{"content": [', "ollama": b'{"message": {'}


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build it with the helpers and constants below."""

    kind: str  # "status" | "slow" | "drop" | "malformed" | "empty_choices" | "ollama_error"
    code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # status only: replaces the error body (dict -> JSON, str/bytes verbatim)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """Label stored in ``Recorded.fault``, e.g. ``"status:429"`` or ``"drop"``."""
        return f"status:{self.code}" if self.kind == "status" else self.kind


def status(code: int, headers: dict[str, str] | None = None, body: Any = None) -> Fault:
    """Reply ``code`` with a JSON error in the wire format's style (or ``body`` if given)."""
    return Fault("status", code, dict(headers or {}), body)


def rate_limited(seconds: float = 1) -> Fault:
    """429 with ``retry-after: <seconds>``."""
    return status(429, {"retry-after": f"{seconds:g}"})


def rate_limited_ms(ms: int = 1000) -> Fault:
    """429 with ``retry-after-ms: <ms>``."""
    return status(429, {"retry-after-ms": str(ms)})


def rate_limited_until(when: datetime) -> Fault:
    """429 with ``retry-after: <HTTP-date>``; a naive ``when`` is taken as UTC."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return status(429, {"retry-after": email.utils.format_datetime(when, usegmt=True)})


def slow(seconds: float) -> Fault:
    """Wait ``seconds`` (cut short by server shutdown), then reply normally."""
    return Fault("slow", seconds=seconds)


DROP = Fault("drop")  # read the request, close the connection without a response
MALFORMED = Fault("malformed")  # 200 application/json whose body is not valid JSON
EMPTY_CHOICES = Fault("empty_choices")  # 200, no choices / empty content / no message
OLLAMA_ERROR = Fault("ollama_error")  # 200 with {"error": "model is overloaded, please retry"}


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any] | None
    raw: bytes
    fault: str | None  # Fault.name of the fault applied, None for a normal reply
    at: float  # time.monotonic() on arrival


def _text(content: Any) -> str:
    """Plain text of a message content: a string or a list of ``{"text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def echo_reply(fmt: str, body: dict[str, Any]) -> str:
    """Default reply: ``"echo: "`` + the content of the last user message."""
    users = [m for m in _messages(body) if m.get("role") == "user"]
    return "echo: " + (_text(users[-1].get("content")) if users else "")


@dataclass(frozen=True)
class Fraction:
    """A fault for a share of the requests, drawn from ``seed``, the body and its repeat count."""

    share: float
    fault: Fault
    seed: int
    streak: int | None = None  # at most this many faults in a row for one body

    def hits(self, raw: bytes, seen: int) -> bool:
        """Whether the body seen ``seen`` times before gets the fault: the same answer in any
        order of arrival, so concurrent clients see the same faults run after run."""
        digest = hashlib.sha256(raw).hexdigest()
        run, hit = 0, False
        for n in range(seen + 1):
            drawn = random.Random(f"{self.seed}:{digest}:{n}").random() < self.share
            hit = drawn and (self.streak is None or run < self.streak)
            run = run + 1 if hit else 0
        return hit


def _mentions(raw: bytes, body: dict[str, Any] | None, marker: str) -> bool:
    if marker.encode() in raw:
        return True
    return body is not None and marker in json.dumps(body, ensure_ascii=False)


def _error_body(fmt: str, code: int, message: str) -> dict[str, Any]:
    if fmt == "anthropic":
        kind = "overloaded_error" if code == 529 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": message}}
    if fmt == "ollama":
        return {"error": message}
    return {"error": {"message": message, "type": _OPENAI_ERRORS.get(code, "server_error")}}


def _payload(
    fmt: str, body: dict[str, Any], text: str, n: int, cached: int, empty: bool
) -> dict[str, Any]:
    """Successful reply in wire format ``fmt``; ``empty`` strips the choices/content/message."""
    model = body.get("model", "")
    i = sum(len(_text(m.get("content")).split()) for m in _messages(body))
    i += len(_text(body.get("system")).split())
    o = len(text.split())
    if fmt == "anthropic":
        content, stop = _anthropic_content(body, text, n)
        return {
            "id": f"msg_{n}", "type": "message", "role": "assistant", "model": model,
            "content": [] if empty else content,
            "stop_reason": stop,
            "usage": {"input_tokens": i, "output_tokens": o, "cache_read_input_tokens": cached},
        }  # fmt: skip
    message = {"role": "assistant", "content": text}
    if fmt == "ollama":
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        reply = {"model": model, "created_at": now, "message": message, "done": True}
        reply |= {"done_reason": "stop", "prompt_eval_count": i, "eval_count": o}
        if empty:
            del reply["message"]
        return reply
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    usage: dict[str, Any] = {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}
    usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "choices": [] if empty else [choice], "usage": usage,
    }  # fmt: skip


def _anthropic_content(body: dict[str, Any], text: str, n: int) -> tuple[list[Any], str]:
    """A text block; or, when the request forces a tool, a call of it whose input is the reply
    text parsed as JSON (as a model answering through a tool does)."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        try:
            given = json.loads(text)
        except ValueError:
            given = {"text": text}
        call = {"type": "tool_use", "id": f"toolu_{n}", "name": choice.get("name"), "input": given}
        return [call], "tool_use"
    return [{"type": "text", "text": text}], "end_turn"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def do_POST(self) -> None:
        """Record the request, apply its fault, answer in the path's wire format."""
        try:
            self._serve()
        except ConnectionError:  # client went away mid-request or mid-reply
            self.close_connection = True

    def do_GET(self) -> None:
        """The batch APIs' reads: a batch's state, a file's content, a batch's results."""
        try:
            self._serve_batch("GET", b"", None)
        except ConnectionError:
            self.close_connection = True

    def _serve_batch(self, method: str, raw: bytes, body: dict[str, Any] | None) -> None:
        owner = self.server.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._admit(Recorded(method, self.path, headers, body, raw, None, 0.0), None)
        route = self.path.split("?", 1)[0].rstrip("/")
        with owner._cond:
            code, payload = owner.batches.serve(owner, method, route, raw, body, headers)
        self._send(code, payload)

    def _serve(self) -> None:
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.split("?", 1)[0].rstrip("/") in BATCH_ROUTES:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            self._serve_batch("POST", raw, parsed if isinstance(parsed, dict) else None)
            return
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        route = self.path.split("?", 1)[0].rstrip("/")
        fmt = ROUTES.get(route) or ("openai" if AZURE_ROUTE.fullmatch(route) else None)
        headers = {k.lower(): v for k, v in self.headers.items()}
        fault = owner._admit(Recorded("POST", self.path, headers, body, raw, None, 0.0), fmt)
        if fmt is None:
            error = {"message": f"no route for POST {route}", "type": "not_found_error"}
            self._send(404, {"error": error})
        elif fault is None or fault.kind == "slow":
            delay = fault.seconds if fault else owner.latency
            if delay > 0 and owner._stop.wait(delay):
                self.close_connection = True  # shutting down: drop instead of replying
            else:
                self._reply(fmt, body, empty=False)
        elif fault.kind == "drop":
            self.close_connection = True
        elif fault.kind == "malformed":
            self._send(200, _MALFORMED[fmt])
        elif fault.kind == "empty_choices":
            self._reply(fmt, body, empty=True)
        elif fault.kind == "ollama_error":
            self._send(200, {"error": "model is overloaded, please retry"})
        else:
            message = f"injected fault: HTTP {fault.code}"
            payload = _error_body(fmt, fault.code, message) if fault.body is None else fault.body
            self._send(fault.code, payload, fault.headers)

    def _reply(self, fmt: str, body: dict[str, Any] | None, empty: bool) -> None:
        owner = self.server.owner
        if body is None or not isinstance(body.get("messages"), list):
            self._send(400, _error_body(fmt, 400, "body must be a JSON object with messages"))
            return
        if fmt == "anthropic" and "max_tokens" not in body:
            error = {"type": "invalid_request_error", "message": "max_tokens: Field required"}
            self._send(400, {"type": "error", "error": error})
            return
        reply = owner.reply
        try:
            text = reply if isinstance(reply, str) else reply(fmt, body)
        except Exception as exc:
            self._send(500, _error_body(fmt, 500, f"reply callable failed: {exc!r}"))
            return
        n = next(owner._ids)
        self._send(200, _payload(fmt, body, text, n, owner.cached_tokens, empty))

    def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(payload, bytes):
            data = payload
        else:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


BATCH_ROUTES = ("/v1/files", "/v1/batches", "/v1/messages/batches")


@dataclass
class Batches:
    """The in-memory state of the batch APIs: uploaded files and submitted batches."""

    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    refusal: int | None = None
    made: int = 0
    """Batches created so far: ids are never reused."""

    def serve(
        self,
        owner: LlmServer,
        method: str,
        route: str,
        raw: bytes,
        body: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> tuple[int, Any]:
        """(status, payload) of one batch API request."""
        parts = route.strip("/").split("/")
        fmt = "anthropic" if route.startswith("/v1/messages/") else "openai"
        if method == "POST" and self.refusal is not None:
            return self.refusal, _error_body(fmt, self.refusal, "batches are not accepted")
        if method == "POST" and route == "/v1/files":
            return self._upload(raw, headers)
        if method == "POST" and route == "/v1/batches" and body is not None:
            return self._create_openai(body)
        if method == "POST" and route == "/v1/messages/batches" and body is not None:
            items = [(r["custom_id"], r["params"]) for r in body.get("requests", [])]
            return 200, self._created("anthropic", items)
        if method == "GET" and parts[:2] == ["v1", "files"] and parts[3:] == ["content"]:
            data = self.files.get(parts[2])
            return (200, data) if data is not None else (404, _error_body(fmt, 404, "no file"))
        if method == "GET" and len(parts) >= 3 and parts[-1] != "results":
            found = self.batches.get(parts[-1])
            if found is not None:
                return 200, self._polled(owner, found)
        if method == "GET" and parts[-1] == "results":
            found = self.batches.get(parts[-2])
            if found is not None and "results" in found:
                return 200, found["results"]
        return 404, _error_body(fmt, 404, f"no route for {method} {route}")

    def _upload(self, raw: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        import email.parser

        head = f"content-type: {headers.get('content-type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser().parsebytes(head + raw)
        for part in message.walk():
            if part.get_param("name", header="content-disposition") == "file":
                file_id = f"file-{len(self.files) + 1}"
                payload = part.get_payload(decode=True)
                self.files[file_id] = payload if isinstance(payload, bytes) else b""
                return 200, {"id": file_id, "object": "file", "purpose": "batch"}
        return 400, _error_body("openai", 400, "no file part")

    def _create_openai(self, body: dict[str, Any]) -> tuple[int, Any]:
        data = self.files.get(str(body.get("input_file_id")))
        if data is None:
            return 400, _error_body("openai", 400, "no such input file")
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        return 200, self._created("openai", [(line["custom_id"], line["body"]) for line in lines])

    def _created(self, fmt: str, items: list[tuple[str, Any]]) -> dict[str, Any]:
        prefix = "msgbatch" if fmt == "anthropic" else "batch"
        self.made += 1
        batch_id = f"{prefix}_{self.made}"
        self.batches[batch_id] = {"id": batch_id, "fmt": fmt, "items": items, "polls": 0}
        return self._view(self.batches[batch_id], ended=False)

    def _polled(self, owner: LlmServer, batch: dict[str, Any]) -> dict[str, Any]:
        batch["polls"] += 1
        if batch["polls"] >= owner.batch_polls and "results" not in batch:
            self._finish(owner, batch)
        return self._view(batch, ended="results" in batch)

    def _finish(self, owner: LlmServer, batch: dict[str, Any]) -> None:
        """Answer every request of the batch as a normal one, unless a marker fails it."""
        lines = []
        for custom_id, body in batch["items"]:
            failed = any(_mentions(b"", body, marker) for marker in self.failing)
            lines.append(_result_line(owner, batch["fmt"], custom_id, body, failed))
        batch["results"] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        batch["results_url"] = f"{owner.url}/v1/messages/batches/{batch['id']}/results"
        if batch["fmt"] == "openai":
            self.files[f"file-out-{batch['id']}"] = batch["results"]

    def _view(self, batch: dict[str, Any], ended: bool) -> dict[str, Any]:
        if batch["fmt"] == "anthropic":
            view = {"id": batch["id"], "type": "message_batch"}
            view["processing_status"] = "ended" if ended else "in_progress"
            view["results_url"] = batch.get("results_url")
            return view
        view = {"id": batch["id"], "object": "batch", "endpoint": "/v1/chat/completions"}
        view["status"] = "completed" if ended else "in_progress"
        view["output_file_id"] = f"file-out-{batch['id']}" if ended else None
        view["error_file_id"] = None
        return view


def _result_line(
    owner: LlmServer, fmt: str, custom_id: str, body: dict[str, Any], failed: bool
) -> dict[str, Any]:
    """One line of a batch's results, in the kind's shape."""
    if fmt == "anthropic":
        if failed:
            error = {"type": "error", "error": {"type": "api_error", "message": "injected"}}
            return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}
        message = _answer(owner, fmt, body)
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
    if failed:
        error_body = _error_body("openai", 500, "injected batch failure")
        response = {"status_code": 500, "request_id": "req", "body": error_body}
    else:
        response = {"status_code": 200, "request_id": "req", "body": _answer(owner, fmt, body)}
    return {"id": f"br-{custom_id}", "custom_id": custom_id, "response": response, "error": None}


def _answer(owner: LlmServer, fmt: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = owner.reply
    text = reply if isinstance(reply, str) else reply(fmt, body)
    return _payload(fmt, body, text, next(owner._ids), owner.cached_tokens, False)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], owner: LlmServer) -> None:
        self.owner = owner
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads idling on keep-alive connections."""
        with self.conns_lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class LlmServer:
    """Fake LLM endpoint serving on 127.0.0.1 in a daemon thread; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0) -> None:
        self.reply: Reply = echo_reply
        self.latency = latency
        self.cached_tokens = 0
        self.requests: list[Recorded] = []
        self._default_latency = latency
        self._cond = threading.Condition()
        self._queue: deque[Fault] = deque()
        self._targeted: dict[str, deque[Fault]] = {}
        self._always: Fault | None = None
        self._fraction: Fraction | None = None
        self._ids = itertools.count(1)
        self.batch_polls = 1
        self.batches = Batches()
        self._stop = threading.Event()
        self._httpd = _HTTPServer((host, port), self)
        self.url = f"http://{host}:{self._httpd.server_port}"
        self.openai_url = self.url + "/v1"  # base URLs as the provider SDKs expect them
        self.anthropic_url = self.ollama_url = self.url
        serve = self._httpd.serve_forever
        self._thread = threading.Thread(target=serve, args=(0.05,), name="llm-server", daemon=True)
        self._thread.start()

    @property
    def count(self) -> int:
        """Number of requests received so far."""
        return len(self.requests)

    def count_path(self, method: str, path: str) -> int:
        """Number of ``method`` requests to exactly ``path`` (query aside)."""
        with self._cond:
            return sum(r.method == method and r.path.split("?")[0] == path for r in self.requests)

    def batch_fail(self, marker: str) -> None:
        """Batched requests whose body contains ``marker`` come back errored."""
        with self._cond:
            self.batches.failing.add(marker)

    def batch_refuse(self, code: int | None = 400) -> None:
        """Refuse batch submissions with HTTP ``code`` (None accepts them again)."""
        with self._cond:
            self.batches.refusal = code

    def count_for(self, marker: str) -> int:
        """Number of requests whose body contains ``marker``."""
        with self._cond:
            return sum(_mentions(r.raw, r.body, marker) for r in self.requests)

    def script(self, *faults: Fault) -> None:
        """Queue faults; each following request takes the next one."""
        with self._cond:
            self._queue.extend(faults)

    def script_for(self, marker: str, *faults: Fault) -> None:
        """Queue faults for requests whose body contains ``marker`` (before ``script``)."""
        with self._cond:
            self._targeted.setdefault(marker, deque()).extend(faults)

    def always(self, fault: Fault | None) -> None:
        """Apply ``fault`` to every request once the queues are empty; None clears it."""
        with self._cond:
            self._always = fault

    def fail_fraction(
        self, share: float, fault: Fault, seed: int = 0, streak: int | None = None
    ) -> None:
        """Apply ``fault`` to about ``share`` of the requests the queues leave, picked by a seeded
        draw per request body and repeat (``Fraction.hits``), never more than ``streak`` times in
        a row for one body when given; a share of 0 clears it."""
        with self._cond:
            self._fraction = Fraction(share, fault, seed, streak) if share > 0 else None

    def reset(self) -> None:
        """Forget requests and faults; restore the default reply, latency and cached tokens."""
        with self._cond:
            self.requests.clear()
            self._queue.clear()
            self._targeted.clear()
            self._always = None
            self._fraction = None
            self.reply, self.latency, self.cached_tokens = echo_reply, self._default_latency, 0
            self.batches.failing.clear()
            self.batches.refusal, self.batch_polls = None, 1

    def wait_for_count(self, n: int, timeout: float = 120.0) -> list[Recorded]:
        """Block until at least ``n`` requests arrived; AssertionError on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"expected {n} requests within {timeout}s, got {self.count}")
            return list(self.requests)

    def _admit(self, record: Recorded, fmt: str | None) -> Fault | None:
        """Pick the fault for a routed request and record it, atomically."""
        with self._cond:
            fault = None
            if fmt is not None:
                for marker, queue in self._targeted.items():
                    if queue and _mentions(record.raw, record.body, marker):
                        fault = queue.popleft()
                        break
                else:
                    fault = self._queue.popleft() if self._queue else self._drawn(record.raw)
            record.fault, record.at = (fault.name if fault else None), time.monotonic()
            self.requests.append(record)
            self._cond.notify_all()
            return fault

    def _drawn(self, raw: bytes) -> Fault | None:
        """The ``fail_fraction`` fault if this request's draw hits, else the ``always`` fault."""
        fraction = self._fraction
        if fraction is not None:
            seen = sum(r.raw == raw for r in self.requests)
            if fraction.hits(raw, seen):
                return fraction.fault
        return self._always

    def close(self) -> None:
        """End pending waits, stop serving and close every socket; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LlmServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT after printing the base URL on one stdout line."""
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic/Ollama HTTP server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with LlmServer(args.host, args.port, latency=args.latency) as server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

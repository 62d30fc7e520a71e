"""A real HTTP proxy on 127.0.0.1 in front of an S3 server, misbehaving on request: it answers
503 SlowDown, drops the connection, or cuts a body short, for the requests whose path holds a
marker (every request when the marker is empty). Everything else is forwarded as it is.

    with FaultyS3(moto_url) as proxy:
        proxy.fault, proxy.marker = "truncate", "/objects/"
        ...  # point AWS_ENDPOINT_URL at proxy.url
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

FAULTS = ("slowdown", "drop", "truncate")
SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        fault = owner.fault if owner.marker in self.path else None
        owner.seen.append((self.command, self.path, fault))
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "slowdown":
            self._reply(503, {"Content-Type": "application/xml"}, SLOWDOWN)
            return
        status, headers, data = owner.forward(self.command, self.path, self.headers, body)
        if fault == "truncate" and self.command == "GET" and len(data) > 1:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        kept = {n: v for n, v in headers if n.lower() not in ("transfer-encoding", "connection")}
        self._reply(status, kept, data)

    def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: FaultyS3) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class FaultyS3:
    """The proxy; `fault` (one of FAULTS, or None) applies to paths holding `marker`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fault: str | None = None
        self.marker = ""
        self.seen: list[tuple[str, str, str | None]] = []
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def forward(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            sent["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def __enter__(self) -> FaultyS3:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

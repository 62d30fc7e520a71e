"""httpx's API over aiohttp's connection pool.

The providers speak httpx (requests, timeouts, responses, its exception tree); this transport
sends their requests on one aiohttp session instead of httpcore's pool, whose per-request work
grows with its open connections and costs several times the CPU of aiohttp's C parser under a
build's fan-out (docs/performance.md). Each reply is read whole before it is returned, and every
aiohttp failure becomes the httpx exception httpcore would have raised for it, so timeouts,
retries and messages stay as they were.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx

KEEPALIVE_S = 5.0
"""How long an idle connection is kept open (httpx's default)."""
MAX_CONNECTIONS = 100
"""Open connections at most (httpx's default); further requests wait for one."""


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests on an aiohttp session created on first use (in the running loop)."""

    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        """`verify`: the TLS context of https requests, or False when none is made."""
        self.verify = verify
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S, ssl=self.verify
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # httpx sends requests for a proxy on its own transport
                auto_decompress=False,  # httpx decodes the body by its content-encoding
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The whole reply to `request`, within the request's connect and read timeouts."""
        timeout = request.extensions.get("timeout", {})
        limits = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
        )
        session = self._open()
        with _as_httpx(request):
            async with session.request(
                request.method,
                str(request.url.copy_with(userinfo=b"")),  # httpx made it a header already
                headers=list(request.headers.multi_items()),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=limits,
            ) as reply:
                content = await reply.read()
                return httpx.Response(
                    reply.status,
                    headers=list(reply.raw_headers),
                    content=content,
                    request=request,
                    extensions={"reason_phrase": (reply.reason or "").encode()},
                )

    async def aclose(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


@contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    """Raise aiohttp's failures as the httpx exceptions httpcore raises for them."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
    except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
    except TimeoutError as exc:
        raise httpx.TimeoutException(str(exc) or "timeout", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc.os_error) or str(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        message = "Server disconnected without sending a response."
        raise httpx.RemoteProtocolError(message, request=request) from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:  # a reply that is not HTTP/1.1
        raise httpx.RemoteProtocolError(str(exc.message), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc

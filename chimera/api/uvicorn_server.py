"""The uvicorn server of the API: its settings from `ServerConfig`, and a header-read timeout uvicorn lacks.

uvicorn bounds idle keep-alive connections, and the app bounds body reads (`server.body_timeout_s`), but a client
that trickles its request line and headers a byte at a time holds its connection open for as long as it likes.
`HeaderTimeoutProtocol` gives each request `server.header_timeout_s` to get its headers in, from when the
connection opened (or the request's first byte, on a kept-alive connection), then answers 408 and closes.
"""

import asyncio
from typing import ClassVar

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chimera.config import ServerConfig

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
_TIMED_OUT += b"connection: close\r\n\r\n%s"


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (what its `auto` picks), closing connections whose headers are too slow.

    A subclass with `header_timeout_s` set is made by `with_header_timeout`: uvicorn builds one protocol object
    per connection from the class alone.
    """

    header_timeout_s: ClassVar[float] = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()  # the next request on a kept-alive connection: its headers get the same time

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # nothing else on the wire: say why
            message = f"request headers not received within {self.header_timeout_s:g} s".encode()
            self.transport.write(_TIMED_OUT % (len(message), message))
        self.transport.close()


def with_header_timeout(timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to give uvicorn (`http=`) for a header-read timeout of `timeout_s`."""

    class Configured(HeaderTimeoutProtocol):
        header_timeout_s = timeout_s

    return Configured


def uvicorn_config(app: FastAPI, server: ServerConfig, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn's settings for serving `app` on `host:port` within `server`'s limits: connections capped at
    `max_connections` (503 beyond), headers due within `header_timeout_s`, idle keep-alive connections closed
    after 5 s, 10 s to finish requests at shutdown."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=with_header_timeout(server.header_timeout_s),
        limit_concurrency=server.max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        log_level="warning",
    )

"""Read timeouts for uvicorn: a connection that sends its request headers or body too
slowly is closed.

uvicorn has none of its own (encode/uvicorn#157: ``--timeout-request-start`` and
``--timeout-request-complete`` were never added); its keep-alive timeout covers only the
idle time between requests and is reset by every byte, so a client that trickles a
header a byte at a time (slowloris) holds a connection for ever. ``timed_protocol``
subclasses the HTTP protocol class uvicorn would use (httptools, else h11) with two
deadlines: headers within ``header_s`` of the connection's opening or the request's
first byte, the body within ``body_s`` of the headers. A request fully received
disarms them; the answer may take as long as it takes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("polingo.service")


class _Deadlines:
    header_s: float
    body_s: float
    _timer: asyncio.TimerHandle | None = None
    _cycle: Any = None  # the request whose headers were seen last

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm(self.header_s, "headers")

    def data_received(self, data: bytes) -> None:
        idle = self.cycle is None or self.cycle.response_complete  # type: ignore[attr-defined]
        if idle and self._timer is None:  # the first byte of the next request
            self._arm(self.header_s, "headers")
        super().data_received(data)  # type: ignore[misc]
        cycle = self.cycle  # type: ignore[attr-defined]
        if cycle is None or cycle.response_complete:
            return
        if not cycle.more_body:  # the whole request is in
            self._disarm()
        elif cycle is not self._cycle:  # its headers just completed
            self._cycle = cycle
            self._arm(self.body_s, "body")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._expired, seconds, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, seconds: float, what: str) -> None:
        self._timer = None
        client = getattr(self, "client", None)
        log.info("closed a connection from %s: request %s not received in %g s",
                 client[0] if client else "-", what, seconds)  # fmt: skip
        self.transport.close()  # type: ignore[attr-defined]


def timed_protocol(header_s: float, body_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``Config(http=...)``) with read deadlines."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is optional
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    return type("TimedHttpProtocol", (_Deadlines, base), {"header_s": header_s, "body_s": body_s})

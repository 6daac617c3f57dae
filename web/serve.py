"""Serving the panel: a TCP site that caps open connections and the time a new connection may
take to send its request head, and an access log that never carries patients' data.

Without a cap, a few hundred silent sockets exhaust the process's file handles and take HTTP,
FastAGI and ARI down together. Each accepted connection is wrapped: past ``max_connections``
it is closed at once; one that has not sent a complete request head (``\\r\\n\\r\\n``) within
``header_timeout`` is closed (aiohttp's keep-alive timeout covers idle time after a request).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from aiohttp import web
from aiohttp.web_log import AccessLogger

from crm import login_limits
from crm.aio import cancel_and_wait
from web.security import client_of

log = logging.getLogger(__name__)
HEAD_END = b"\r\n\r\n"
_REDACT_PATH = re.compile(r"^/e/[^/?]+")


class RateLimitedLog:
    """At most one line per ``every`` seconds, with the count of those left out."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last = float("-inf")
        self.skipped = 0

    def warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.skipped += 1
            return
        suffix = f" ({self.skipped} more like it not logged)" if self.skipped else ""
        self.last, self.skipped = now, 0
        log.warning(message + suffix, *args)


class _Guard(asyncio.Protocol):
    """Forwards to aiohttp's RequestHandler; refuses connections over the cap and closes
    those that do not send a request head in time."""

    def __init__(self, site: GuardedSite, inner: asyncio.Protocol) -> None:
        self.site, self.inner = site, inner
        self.transport: asyncio.Transport | None = None
        self.refused = False
        self.peer = ""
        self.head = b""
        self.head_done = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.site.open >= self.site.max_connections:
            self.refused = True
            self.site.refusals += 1
            self.site.refused_log.warn("HTTP: %d connections open, refusing more", self.site.open)
            transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.site.share_ok(self.peer):
            self.refused = True
            self.site.refusals += 1
            self.site.refused_log.warn("HTTP: %s holds its share of connections (%d), refusing more",
                                       self.peer, self.site.max_per_address)
            transport.abort()
            return
        self.site.open += 1
        self.site.by_address[self.peer] = self.site.by_address.get(self.peer, 0) + 1
        self.inner.connection_made(transport)
        self.timer = asyncio.get_running_loop().call_later(self.site.header_timeout, self._too_slow)

    def _too_slow(self) -> None:
        if not self.head_done and self.transport is not None:
            self.site.slow += 1
            self.site.slow_log.warn("HTTP: a connection sent no request head in %.0f s; closed",
                                    self.site.header_timeout)
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.head_done:
            self.head = (self.head + data)[-8192:]
            if HEAD_END in self.head:
                self.head_done, self.head = True, b""
                if self.timer is not None:
                    self.timer.cancel()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.site.open -= 1
        left = self.site.by_address.get(self.peer, 1) - 1
        if left > 0:
            self.site.by_address[self.peer] = left
        else:
            self.site.by_address.pop(self.peer, None)
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int = 512,
                 header_timeout: float = 10.0, max_per_address: int = 0, shared: tuple[str, ...] = (),
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.max_connections = max_connections
        # one client's share: by default an eighth of the slots (at least 8), so one address
        # cannot take them all; ``shared`` (trusted proxies) carry many clients and are exempt
        self.max_per_address = max_per_address or max(8, max_connections // 8)
        self.shared = shared
        self.by_address: dict[str, int] = {}
        self.header_timeout = header_timeout
        self.open = 0
        self.refusals = 0
        self.slow = 0
        self.refused_log = RateLimitedLog()
        self.slow_log = RateLimitedLog()

    async def start(self) -> None:
        self._runner._reg_site(self)  # what BaseSite.start does
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Guard(self, server()), self._host, self._port,
            backlog=self._backlog, reuse_address=self._reuse_address,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


    def share_ok(self, peer: str) -> bool:
        return login_limits.in_networks(peer, self.shared) or self.by_address.get(peer, 0) < self.max_per_address


class PrivateAccessLogger(AccessLogger):
    """The access log without query strings (patients' names and numbers typed into a search)
    and without the capability in ``/e/<token>`` links; the client as a trusted proxy names it.
    The request is shown through a view, never cloned: the pinned aiohttp refuses to clone a
    request whose body was read, which lost every POST line (logins, CSRF probes) to a traceback."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            view = _LoggedRequest(request, redact(request.rel_url.raw_path, request.rel_url.raw_query_string),
                                  client_of(request))
            super().log(view, response, time)  # type: ignore[arg-type]
        except Exception:  # a log line must never cost a request; one line, no traceback
            self.logger.warning("access log: a request could not be described")


class _LoggedRequest:
    """What the access log reads of a request, with the path and the client replaced."""

    __slots__ = ("_request", "path_qs", "remote")

    def __init__(self, request: web.BaseRequest, path_qs: str, remote: str) -> None:
        self._request, self.path_qs, self.remote = request, path_qs, remote

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def redact(path: str, query: str) -> str:
    path = _REDACT_PATH.sub("/e/-", path)
    return path + ("?-" if query else "")


ACCESS_LOG_FORMAT = '%a %t "%r" %s %b %Tfs "%{User-Agent}i"'  # no Referer: it carries queries too


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event, *,
                max_connections: int, header_timeout: float, max_per_address: int = 0,
                shared: tuple[str, ...] = ()) -> None:
    """Run the panel until ``stop`` is set (``clinic-pbx run``)."""
    runner = web.AppRunner(app, access_log_class=PrivateAccessLogger, access_log_format=ACCESS_LOG_FORMAT,
                           keepalive_timeout=75.0)
    # the start may wait (a chain's branch waits for its centre, pbx/workers/centre_start.py): a stop
    # meanwhile ends it rather than waiting for the centre
    setup = asyncio.create_task(runner.setup())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({setup, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not setup.done():
        await cancel_and_wait(setup)
        log.warning("stopped before the start was complete")
        return
    stopped.cancel()
    setup.result()
    try:
        site = GuardedSite(runner, host, port, max_connections=max_connections, header_timeout=header_timeout,
                           max_per_address=max_per_address, shared=shared)
        await site.start()
        await stop.wait()
    finally:
        await runner.cleanup()

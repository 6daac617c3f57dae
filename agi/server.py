"""FastAGI server on panoramisk's Application, made safe for a real switch.

panoramisk 1.4's ``Application.handler`` loops forever on ``reader.read()`` when the peer closes
before the blank line that ends the AGI environment (``read`` returns ``b''`` and the loop never
ends, blocking the event loop), and it wraps plain functions in ``asyncio.coroutine``, which no
longer exists on Python 3.11. This subclass reads the environment with an EOF- and size-safe
reader and a deadline, accepts async routes only, treats ``HANGUP``/``511`` as the caller having
gone, and bounds each handler in time: Asterisk waits on us while the caller hears ringing.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from panoramisk.fast_agi import Application, Request
from panoramisk.utils import parse_agi_result

log = logging.getLogger(__name__)
# FastAGI latency histogram buckets (seconds): the caller lookup is a few milliseconds
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)

MAX_ENV_BYTES = 64 * 1024


class AgiHangup(Exception):
    """The channel hung up, or Asterisk closed the connection."""


class AgiRequest(Request):
    """A request whose reads survive EOF and the asynchronous ``HANGUP`` line."""

    hung_up: bool = False

    async def _read_result(self) -> dict[str, Any]:
        while True:
            line = await self.reader.readline()
            if not line:
                raise AgiHangup("connection closed by Asterisk")
            text = line.decode(self.encoding, "replace").rstrip("\r\n")
            if text == "HANGUP":
                # Sent when the caller hangs up (AGISIGHUP); the command's own reply follows.
                self.hung_up = True
                continue
            if text.startswith("511"):
                raise AgiHangup(text)
            return parse_agi_result(text)

    async def send_command(self, command: str) -> dict[str, Any]:
        if "\n" in command or "\r" in command:
            raise ValueError("an AGI command is one line")
        return await super().send_command(command)

    async def set_variables(self, values: dict[str, str]) -> bool:
        """Set several variables (or functions such as CALLERID(name)) in ONE round trip with
        ``EXEC MSet``. Values are made safe for MSet's comma-separated, quoted arguments."""
        parts = []
        for name, value in values.items():
            clean = "".join(" " if ch in ',"\\\r\n' else ch for ch in value)
            parts.append(f"{name}={clean}")
        result = await self.send_command(f'EXEC MSet "{",".join(parts)}"')
        return result.get("status_code") == 200

    async def set_variable(self, name: str, value: str) -> bool:
        """SET VARIABLE with the value quoted; returns True on ``200 result=1``."""
        quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
        result = await self.send_command(f'SET VARIABLE {name} "{quoted}"')
        return result.get("status_code") == 200 and result.get("result", ("",))[0] == "1"


Route = Callable[[AgiRequest], Awaitable[None]]


async def read_agi_environment(
    reader: asyncio.StreamReader, encoding: str = "utf-8", timeout: float = 5.0
) -> dict[str, str] | None:
    """Read ``agi_*: value`` lines up to the blank line in one buffered read. ``None`` on EOF
    before the blank line, on a timeout, or when the header exceeds the stream's limit."""
    try:
        async with asyncio.timeout(timeout):
            raw = await reader.readuntil(b"\n\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
        return None
    if len(raw) > MAX_ENV_BYTES:
        return None
    env: dict[str, str] = {}
    for line in raw.decode(encoding, "replace").split("\n"):
        key, sep, value = line.rstrip("\r").partition(": ")
        if sep:
            env[key] = value
    return env


class FastAgiServer(Application):
    """``add_route(path, async_fn)``; ``start()``/``stop()`` a loopback listener."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        handler_timeout: float = 3.0,
        on_failure: Callable[[AgiRequest], Awaitable[None]] | None = None,
        max_connections: int = 512,
    ) -> None:
        super().__init__(default_encoding="utf-8", loop=asyncio.get_running_loop())
        self.host = host
        self.port = port
        self.handler_timeout = handler_timeout
        self.on_failure = on_failure
        self.server: asyncio.AbstractServer | None = None
        self.active: set[asyncio.Task[Any]] = set()
        self.max_connections = max_connections  # more at once are closed: file handles stay free
        self.stats = {"requests": 0, "dropped": 0, "failed": 0, "hangups": 0, "refused": 0}
        # a request's handling time (environment read -> route done), for /metrics' histogram
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: above every bucket
        self.latency_sum = 0.0
        self._last_refusal_log = float("-inf")

    def add_route(self, path: str, endpoint: Route) -> None:  # type: ignore[override]
        if not asyncio.iscoroutinefunction(endpoint):
            raise TypeError(f"FastAGI route {path!r} must be an async function")
        super().add_route(path, endpoint)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handler, self.host, self.port)
        log.info("FastAGI listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.active):
            task.cancel()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:  # type: ignore[override]
        if len(self.active) >= self.max_connections:
            self.stats["refused"] += 1
            now = asyncio.get_running_loop().time()
            if now - self._last_refusal_log >= 10:  # one line per 10 s, not one per socket
                self._last_refusal_log = now
                log.warning("FastAGI: %d connections open, refusing more (%d refused so far)",
                            len(self.active), self.stats["refused"])
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self.active.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self.active.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        env = await read_agi_environment(reader, self.default_encoding)
        if env is None:
            self.stats["dropped"] += 1
            log.warning("FastAGI: peer %s sent no complete request; dropped",
                        writer.get_extra_info("peername"))
            return
        self.stats["requests"] += 1
        script = env.get("agi_network_script", "")
        path = script.split("?", 1)[0]
        route = self._route.get(path)
        request = AgiRequest(self, env, reader, writer, encoding=self.default_encoding)
        if route is None:
            self.stats["failed"] += 1
            log.error("FastAGI: no route for %r (channel %s)", script, env.get("agi_channel"))
            await self._fail_safe(request)
            return
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self.handler_timeout):
                await route(request)
            self._timed(asyncio.get_running_loop().time() - started)
        except AgiHangup as exc:
            self.stats["hangups"] += 1
            log.info("FastAGI %s: caller gone (%s)", path, exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.stats["hangups"] += 1
            log.info("FastAGI %s: connection lost", path)
        except Exception:
            self.stats["failed"] += 1
            log.exception("FastAGI %s failed for channel %s", path, env.get("agi_channel"))
            await self._fail_safe(request)

    def _timed(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    async def _fail_safe(self, request: AgiRequest) -> None:
        """Let the dialplan go on with a known default instead of leaving the caller hanging."""
        try:
            await asyncio.wait_for(request.set_variable("CLINIC_AGI_STATUS", "FAILED"), 1.0)
            if self.on_failure is not None:
                await asyncio.wait_for(self.on_failure(request), 1.0)
        except Exception as exc:  # the channel may be gone already
            log.info("FastAGI: could not set the fail-safe defaults (%s)", exc)

"""The AMI adapter: panoramisk's Manager with our byte framing, one ordered queue, reconnect with
backoff, and a ping watchdog.

Events never go through panoramisk's callback dispatch (which turns coroutine callbacks into
independent tasks and so can reorder them). The protocol puts each event on one
``asyncio.Queue`` in the order the bytes arrived, with the receive time; a single consumer
elsewhere reads it. Connection changes are put on the same queue (``AmiLink``), so the consumer
sees "connected" exactly between the last event of the old link and the first of the new one,
which is where it must resync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from pbx.ami.framing import AmiFramer, AmiMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AmiEvent:
    """An AMI event as received: headers plus the wall-clock receive time."""

    name: str
    headers: dict[str, Any]
    received_at: float


@dataclass(frozen=True, slots=True)
class AmiLink:
    """A change of the AMI link: ``up`` after a successful login, ``down`` when it is lost."""

    up: bool
    at: float


QueueItem = AmiEvent | AmiLink
RawSink = Callable[[bytes, float], None]


class FramedAMIProtocol(AMIProtocol):
    """panoramisk's protocol with byte-level framing and whole-message UTF-8 decoding."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.framer = AmiFramer()

    def data_received(self, data: bytes) -> None:
        factory: ClinicManager | None = self.factory
        now = time.time()
        if factory is not None and factory.raw_sink is not None:
            factory.raw_sink(data, now)
        for msg in self.framer.feed(data):
            if self.version is None and self.framer.banner:
                self.version = self.framer.banner.partition("/")[2].strip()
                self.log.info("AMI protocol version %s", self.version)
            if msg.undecodable or msg.malformed_lines:
                self.log.warning(
                    "AMI message with %s: %.200r",
                    "invalid UTF-8" if msg.undecodable else f"{msg.malformed_lines} bad lines",
                    msg.headers,
                )
            self._handle(msg, now)

    def _handle(self, msg: AmiMessage, now: float) -> None:
        headers = msg.headers
        # Only replies to our actions carry an ActionID/CommandID; plain events (the flood)
        # skip panoramisk's case-insensitive Message entirely.
        if "ActionID" in headers or "CommandID" in headers or "Response" in headers:
            message = Message(headers, "")
            response = self.responses.get(message.id)
            if response is None and message.action_id:
                response = self.responses.get(message.action_id)
            if response is not None:
                if response.add_message(message):
                    self.responses.pop(response.id, None)
                    if response.action_id:
                        self.responses.pop(response.action_id, None)
                return
        name = msg.event
        if name is None or self.factory is None:
            return
        self.factory.on_ami_event(AmiEvent(name, msg.headers, now))
        if name == "Shutdown":
            self.connection_lost(None)


class ClinicManager(Manager):
    """panoramisk's Manager with exponential reconnect backoff and a ping watchdog."""

    def __init__(
        self,
        queue: asyncio.Queue[QueueItem],
        *,
        raw_sink: RawSink | None = None,
        backoff_min: float = 0.5,
        backoff_max: float = 2.0,  # loopback: cheap to retry; back within 2 s of Asterisk
        ping_timeout: float = 5.0,
        **config: Any,
    ) -> None:
        config.setdefault("protocol_factory", FramedAMIProtocol)
        super().__init__(**config)
        self.queue = queue
        self.raw_sink = raw_sink
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.ping_timeout = ping_timeout
        self.reconnect_timeout = backoff_min  # type: ignore[assignment]
        self.closing = False
        self.logged_in = asyncio.Event()
        self._pong: asyncio.Future[Any] | None = None
        self._ping_sent = 0.0
        self.missed_pings = 0
        # panoramisk registers a FullyBooted callback to resend queued actions; we keep it.

    # panoramisk reads self.reconnect_timeout each time it schedules a reconnect.
    def _grow_backoff(self) -> None:
        self.reconnect_timeout = min(self.reconnect_timeout * 2, self.backoff_max)  # type: ignore[assignment]

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        failed = f.exception() is not None if not f.cancelled() else True
        if self.closing:
            if not failed:
                f.result()[0].close()
            return
        super().connection_made(f)
        if failed:
            log.warning("AMI not reachable; retrying in %.1f s", self.reconnect_timeout)
            self._grow_backoff()

    def login(self, future: asyncio.Future[Any]) -> bool:
        try:
            ok = super().login(future)
        except Exception:  # a connection lost during login
            log.exception("AMI login failed")
            return False
        if ok:
            self.reconnect_timeout = self.backoff_min  # type: ignore[assignment]
            self.missed_pings = 0
            self._pong = None
            self.logged_in.set()
            self.queue.put_nowait(AmiLink(True, time.time()))
            log.info("AMI logged in")
        else:
            log.error("AMI login refused (check the AMI user and secret)")
        return ok

    def ping(self) -> None:
        """Send a Ping; if the previous one is still unanswered, the link is dead: drop it."""
        self.pinger = self.loop.call_later(self.ping_interval, self.ping)
        if self.protocol is None or self.protocol.closed or not self.authenticated:
            return
        if self._pong is not None and not self._pong.done():
            if time.monotonic() - self._ping_sent >= self.ping_timeout:
                self.missed_pings += 1
                log.error("AMI ping unanswered for %.1f s; reconnecting", self.ping_timeout)
                self.protocol.transport.close()
                return
            return
        self._ping_sent = time.monotonic()
        self._pong = self.protocol.send({"Action": "Ping"})

    def on_ami_event(self, event: AmiEvent) -> None:
        self.queue.put_nowait(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self.logged_in.clear()
        self.authenticated = False
        self.queue.put_nowait(AmiLink(False, time.time()))
        # Never replay an action (an Originate!) on the next link: its caller gets an error.
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            if not action.future.done():
                action.future.set_exception(ConnectionError("AMI connection lost"))
        if self.closing:
            return
        super().connection_lost(exc)
        self._grow_backoff()

    def connect(self, run_forever: bool = False, on_startup: Any = None, on_shutdown: Any = None):  # type: ignore[override]
        if self.closing:
            return None
        return super().connect(run_forever, on_startup, on_shutdown)

    def close(self) -> None:
        self.closing = True
        super().close()


class AmiClient:
    """Facade used by the rest of clinic-pbx: start, stop, send actions, read the queue."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        raw_sink: RawSink | None = None,
        backoff_min: float = 0.5,
        backoff_max: float = 2.0,  # loopback: cheap to retry; back within 2 s of Asterisk
    ) -> None:
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue()
        self._config = dict(
            host=host,
            port=port,
            username=username,
            secret=secret,
            ping_delay=max(1, int(ping_interval)),
            ping_interval=max(1, int(ping_interval)),
            events="on",
            encoding="utf8",
        )
        self._raw_sink = raw_sink
        self._ping_timeout = ping_timeout
        self._backoff = (backoff_min, backoff_max)
        self.manager: ClinicManager | None = None

    @property
    def connected(self) -> bool:
        return self.manager is not None and self.manager.logged_in.is_set()

    async def start(self, wait: float | None = None) -> bool:
        """Start connecting (and keep reconnecting). With ``wait``, wait that long for login."""
        self.manager = ClinicManager(
            self.queue,
            raw_sink=self._raw_sink,
            backoff_min=self._backoff[0],
            backoff_max=self._backoff[1],
            ping_timeout=self._ping_timeout,
            loop=asyncio.get_running_loop(),
            **self._config,
        )
        self.manager.connect()
        if wait:
            return await self.wait_connected(wait)
        return False

    async def wait_connected(self, timeout: float) -> bool:
        assert self.manager is not None
        try:
            await asyncio.wait_for(self.manager.logged_in.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def action(self, action: dict[str, Any], timeout: float = 10.0) -> Any:
        """Send an action and wait for its response (a list for event-list actions)."""
        if not self.connected or self.manager is None:
            raise ConnectionError("AMI is not connected")
        future = self.manager.send_action(dict(action))
        return await asyncio.wait_for(future, timeout)

    async def stop(self) -> None:
        if self.manager is not None:
            self.manager.close()
            self.manager = None

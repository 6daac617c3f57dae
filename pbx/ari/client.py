"""A thin ARI client on aiohttp: REST calls with timeouts, and the events WebSocket with
reconnect (exponential backoff) and re-subscription.

ari-py is Python-2-only; its asyncio successors work but none reconnects, and Asterisk keeps no
events for a disconnected client. After every (re)connect the client puts an ``AriLink(up=True)``
marker on the event queue before any event of the new link, so the consumer knows to resync
(e.g. list the channels still in the Stasis app) exactly there.

"Connected" means our Stasis app is registered, not only that a WebSocket is open: another
client opening the events socket under the same app name takes the app over (Asterisk sends
``ApplicationReplaced``) and destroys it when that client leaves. The client then reconnects,
which registers the app again, and it asks ``GET /applications/{app}`` after every connect and
every ``verify_seconds`` so a lost app is never mistaken for a working one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from crm.aio import cancel_and_wait

log = logging.getLogger(__name__)
REPLACED_BACKOFF = 2.0  # seconds before registering an app another client took over


class AriError(Exception):
    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        super().__init__(f"ARI {method} {path}: {status} {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class AriLink:
    up: bool
    at: float


@dataclass(frozen=True, slots=True)
class AriEvent:
    type: str
    data: dict[str, Any]
    received_at: float


class AriClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        app: str,
        *,
        request_timeout: float = 5.0,
        backoff_min: float = 0.25,
        backoff_max: float = 2.0,  # loopback: cheap to retry; back within 2 s of Asterisk
        heartbeat: float = 15.0,
        verify_seconds: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        # aiohttp 3.14 deprecates BasicAuth/auth=: send the header ourselves.
        self._headers = {"Authorization": f"Basic {token}"}
        self.request_timeout = request_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.heartbeat = heartbeat
        self.verify_seconds = verify_seconds
        self.replaced = 0  # how often another client took our app over
        self.events: asyncio.Queue[AriEvent | AriLink] = asyncio.Queue()
        self.subscriptions: set[str] = set()
        self.connected = asyncio.Event()
        self.connects = 0
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = False

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers=self._headers)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="ari-events")

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()
        await cancel_and_wait(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # ---- REST ---------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        if self._session is None:
            raise RuntimeError("ARI client not started")
        url = f"{self.base_url}/ari/{path.lstrip('/')}"
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        t = aiohttp.ClientTimeout(total=timeout or self.request_timeout)
        async with self._session.request(
            method, url, params=clean, json=json_body, timeout=t
        ) as resp:
            body = await resp.text()
            if resp.status >= 400:
                try:
                    message = json.loads(body).get("message", body)
                except (ValueError, AttributeError):
                    message = body
                raise AriError(resp.status, message, method, path)
            if not body:
                return None
            return json.loads(body)

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json_body: Any = None, **params: Any) -> Any:
        return await self.request("POST", path, params=params, json_body=json_body)

    async def delete(self, path: str, **params: Any) -> Any:
        return await self.request("DELETE", path, params=params)

    async def subscribe(self, event_source: str) -> None:
        """Subscribe the app to an event source (``channel:ID``, ``endpoint:PJSIP/101``...);
        remembered and renewed after every reconnect."""
        self.subscriptions.add(event_source)
        if self.connected.is_set():
            await self.post(f"applications/{self.app}/subscription", eventSource=event_source)

    async def unsubscribe(self, event_source: str) -> None:
        self.subscriptions.discard(event_source)
        if self.connected.is_set():
            await self.delete(f"applications/{self.app}/subscription", eventSource=event_source)

    # ---- events WebSocket ---------------------------------------------------------------
    async def _run(self) -> None:
        delay = self.backoff_min
        ws_url = self.base_url.replace("http", "ws", 1) + "/ari/events"
        while not self._stopping:
            try:
                assert self._session is not None
                # the handshake has its own deadline: after a half-open link it may be sent on
                # a pooled connection that went silent, and the session's default is 5 minutes (a silent
                # link is then noticed in heartbeat * 1.5 plus this: 27.5 s by default)
                handshake = self._session.ws_connect(
                    ws_url,
                    params={"app": self.app, "subscribeAll": "false"},
                    heartbeat=self.heartbeat,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                )
                async with await asyncio.wait_for(handshake, self.request_timeout) as ws:
                    self._ws = ws
                    await self._on_connected()
                    delay = self.backoff_min
                    verifier = asyncio.create_task(self._verify(ws), name="ari-verify")
                    try:
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                if self._on_text(msg.data) == "ApplicationReplaced":
                                    self.replaced += 1
                                    # two servers with one app name would take it from each
                                    # other in a tight loop: wait a little before taking it back
                                    delay = REPLACED_BACKOFF
                                    log.error("ARI app %s was taken over by another client; "
                                              "registering it again in %.0f s", self.app, delay)
                                    break
                            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                                break
                    finally:
                        await cancel_and_wait(verifier)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("ARI events: %s; retrying in %.2f s", str(exc) or type(exc).__name__, delay)
            except Exception:
                log.exception("ARI events loop error; retrying in %.2f s", delay)
            finally:
                self._ws = None
                if self.connected.is_set():
                    self.connected.clear()
                    self.events.put_nowait(AriLink(False, time.time()))
                    if not self._stopping:
                        log.warning("ARI events WebSocket lost")
            if self._stopping:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    async def app_registered(self) -> bool:
        """Asterisk knows our Stasis app (REST); False when it answers 404."""
        try:
            await self.get(f"applications/{self.app}")
        except AriError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _verify(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """While the socket is open, check now and then that the app is still ours."""
        while not ws.closed:
            await asyncio.sleep(self.verify_seconds)
            try:
                registered = await self.app_registered()
            except (AriError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("ARI app check failed: %s", exc or type(exc).__name__)
                continue  # the WebSocket's own heartbeat tells a dead link
            if not registered:
                log.error("ARI app %s is no longer registered in Asterisk; reconnecting", self.app)
                await ws.close()
                return

    async def _on_connected(self) -> None:
        self.connects += 1
        if not await self.app_registered():
            raise AriError(404, f"app {self.app} not registered after connecting", "GET", "applications")
        for source in sorted(self.subscriptions):
            try:
                await self.post(f"applications/{self.app}/subscription", eventSource=source)
            except AriError as exc:
                # the object is gone (a channel that ended while we were away): forget it
                log.info("ARI re-subscription to %s dropped: %s", source, exc.message)
                self.subscriptions.discard(source)
        self.connected.set()
        self.events.put_nowait(AriLink(True, time.time()))
        log.info("ARI events WebSocket connected (app %s)", self.app)

    def _on_text(self, text: str) -> str | None:
        """Queue one event; returns its type (None for a malformed one)."""
        try:
            data = json.loads(text)
            kind = str(data["type"])
        except (ValueError, KeyError, TypeError):
            log.warning("ARI: ignored a malformed event: %.200r", text)
            return None
        self.events.put_nowait(AriEvent(kind, data, time.time()))
        return kind


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)

"""A thin ARI client on aiohttp: REST calls with timeouts, and the events WebSocket with
reconnect (exponential backoff) and re-subscription.

ari-py is Python-2-only; its asyncio successors work but none reconnects, and Asterisk keeps no
events for a disconnected client. After every (re)connect the client puts an ``AriLink(up=True)``
marker on the event queue before any event of the new link, so the consumer knows to resync
(e.g. list the channels still in the Stasis app) exactly there.
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

from pbx.tasks import cancel_and_wait

log = logging.getLogger(__name__)


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
        backoff_max: float = 10.0,
        heartbeat: float = 15.0,
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
                async with self._session.ws_connect(
                    ws_url,
                    params={"app": self.app, "subscribeAll": "false"},
                    heartbeat=self.heartbeat,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                ) as ws:
                    self._ws = ws
                    await self._on_connected()
                    delay = self.backoff_min
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self._on_text(msg.data)
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                            break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("ARI events: %s; retrying in %.2f s", exc or type(exc).__name__, delay)
            except Exception:
                log.exception("ARI events loop error; retrying in %.2f s", delay)
            finally:
                self._ws = None
                if self.connected.is_set():
                    self.connected.clear()
                    self.events.put_nowait(AriLink(False, time.time()))
                    log.warning("ARI events WebSocket lost")
            if self._stopping:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    async def _on_connected(self) -> None:
        self.connects += 1
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

    def _on_text(self, text: str) -> None:
        try:
            data = json.loads(text)
            kind = data["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("ARI: ignored a malformed event: %.200r", text)
            return
        self.events.put_nowait(AriEvent(str(kind), data, time.time()))


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)

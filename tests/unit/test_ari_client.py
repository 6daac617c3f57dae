"""The ARI client against a small aiohttp fake of Asterisk: REST, events, reconnect."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pbx.ari.client import AriClient, AriError, AriEvent, AriLink

AUTH = "Basic " + base64.b64encode(b"u:p").decode()


class FakeAri:
    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.subscriptions: list[str] = []
        self.ws_connects = 0
        self.apps: set[str] = set()  # registered Stasis apps, as Asterisk keeps them
        app = web.Application()
        app.router.add_get("/ari/applications/{app}", self.application)
        app.router.add_get("/ari/events", self.events)
        app.router.add_get("/ari/asterisk/info", self.info)
        app.router.add_post("/ari/applications/{app}/subscription", self.subscribe)
        app.router.add_get("/ari/slow", self.slow)
        self.server = TestServer(app, host="127.0.0.1")

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != AUTH:
            raise web.HTTPUnauthorized(text='{"message": "Authentication required"}')

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        self._auth(request)
        assert request.query["app"] == "clinic-pbx"
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_connects += 1
        self.apps.add(request.query["app"])
        self.sockets.append(ws)
        async for _ in ws:
            pass
        return ws

    async def info(self, request: web.Request) -> web.Response:
        self._auth(request)
        return web.json_response({"system": {"version": "22.10.1"}})

    async def subscribe(self, request: web.Request) -> web.Response:
        source = request.query["eventSource"]
        if source == "channel:gone":
            return web.json_response({"message": "Channel not found"}, status=404)
        self.subscriptions.append(source)
        return web.json_response({"name": request.match_info["app"]})

    async def application(self, request: web.Request) -> web.Response:
        name = request.match_info["app"]
        if name not in self.apps:
            return web.json_response({"message": "Application not found"}, status=404)
        return web.json_response({"name": name})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    async def push(self, event: dict) -> None:
        for ws in list(self.sockets):
            if not ws.closed:
                await ws.send_json(event)

    async def drop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        self.sockets.clear()


async def next_of(client: AriClient, kind: type, timeout: float = 5.0):
    while True:
        item = await asyncio.wait_for(client.events.get(), timeout)
        if isinstance(item, kind):
            return item


@pytest.fixture
async def fake():
    f = FakeAri()
    await f.server.start_server()
    yield f
    await f.server.close()


def client_for(fake: FakeAri, password: str = "p", verify_seconds: float = 10.0) -> AriClient:
    return AriClient(
        f"http://127.0.0.1:{fake.server.port}", "u", password, "clinic-pbx",
        backoff_min=0.05, backoff_max=0.2, request_timeout=0.5, verify_seconds=verify_seconds,
    )


async def test_rest_and_events(fake: FakeAri) -> None:
    client = client_for(fake)
    await client.start()
    assert await client.wait_connected(5)
    assert (await client.get("asterisk/info"))["system"]["version"] == "22.10.1"
    await fake.push({"type": "StasisStart", "channel": {"id": "c1", "name": "Local/1@x"}})
    ev = await next_of(client, AriEvent)
    assert ev.type == "StasisStart" and ev.data["channel"]["id"] == "c1"
    await client.stop()


async def test_errors_and_timeouts(fake: FakeAri) -> None:
    client = client_for(fake, password="wrong")
    await client.start()
    with pytest.raises(AriError) as err:
        await client.get("asterisk/info")
    assert err.value.status == 401
    with pytest.raises(TimeoutError):
        await client.get("slow")
    await client.stop()


async def test_reconnect_resubscribes_and_marks_the_gap(fake: FakeAri) -> None:
    client = client_for(fake)
    await client.start()
    assert await client.wait_connected(5)
    assert (await next_of(client, AriLink)).up
    await client.subscribe("endpoint:PJSIP/101")
    client.subscriptions.add("channel:gone")  # a channel that ended while we were away
    assert fake.subscriptions == ["endpoint:PJSIP/101"]
    await fake.drop()
    assert not (await next_of(client, AriLink)).up
    assert (await next_of(client, AriLink)).up
    assert fake.ws_connects == 2
    assert fake.subscriptions == ["endpoint:PJSIP/101", "endpoint:PJSIP/101"]
    assert client.subscriptions == {"endpoint:PJSIP/101"}
    await fake.push({"type": "ChannelDtmfReceived", "digit": "1"})
    assert (await next_of(client, AriEvent)).data["digit"] == "1"
    await client.stop()


async def test_malformed_event_is_ignored(fake: FakeAri) -> None:
    client = client_for(fake)
    await client.start()
    assert await client.wait_connected(5)
    for ws in fake.sockets:
        await ws.send_str("{not json")
        await ws.send_str('{"no_type": 1}')
    await fake.push({"type": "Dial"})
    assert (await next_of(client, AriEvent)).type == "Dial"
    await client.stop()


async def test_application_replaced_is_taken_back(fake: FakeAri) -> None:
    """Another client (an old `clinic-pbx check`) opening the events socket under our app name
    takes the app over: the client must stop saying "connected" and register it again."""
    client = client_for(fake)
    await client.start()
    assert await client.wait_connected(5)
    assert (await next_of(client, AriLink)).up
    await fake.push({"type": "ApplicationReplaced", "application": "clinic-pbx"})
    assert not (await next_of(client, AriLink)).up
    assert (await next_of(client, AriLink)).up
    assert client.connected.is_set() and client.replaced == 1 and fake.ws_connects == 2
    await client.stop()


async def test_an_app_lost_silently_is_noticed(fake: FakeAri) -> None:
    """Asterisk destroyed the app (the client that replaced it left) while our socket stays
    open and quiet: the periodic check sees the 404 and reconnects."""
    client = client_for(fake, verify_seconds=0.1)
    await client.start()
    assert await client.wait_connected(5)
    assert (await next_of(client, AriLink)).up
    fake.apps.clear()
    assert not (await next_of(client, AriLink)).up
    assert (await next_of(client, AriLink)).up
    assert "clinic-pbx" in fake.apps and client.connected.is_set()
    await client.stop()


async def test_a_half_open_events_socket_is_noticed_and_replaced(fake: FakeAri) -> None:
    """Traffic silently dropped (the socket stays open): the WebSocket heartbeat gets no pong,
    the client reconnects and registers the app again."""
    from tests.blackhole_proxy import BlackholeProxy

    proxy = BlackholeProxy(fake.server.port)
    await proxy.start()
    client = AriClient(f"http://127.0.0.1:{proxy.port}", "u", "p", "clinic-pbx", backoff_min=0.05,
                       backoff_max=0.2, request_timeout=0.5, heartbeat=0.5)
    await client.start()
    try:
        assert await client.wait_connected(5)
        assert (await next_of(client, AriLink)).up
        proxy.freeze_all()
        t0 = asyncio.get_running_loop().time()
        assert not (await next_of(client, AriLink, timeout=10)).up
        assert (await next_of(client, AriLink, timeout=10)).up
        assert asyncio.get_running_loop().time() - t0 < 5 and fake.ws_connects == 2
    finally:
        await client.stop()
        await proxy.stop()

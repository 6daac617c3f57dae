"""The phone in the browser (issue #34): the page's account and its SIP WebSocket.

The browser never reaches Asterisk directly: ``/phone/ws`` relays its SIP-over-WebSocket frames
to Asterisk's own WebSocket transport (loopback), for a logged-in user holding a browser phone,
from the panel's own origin. So SIP is behind the panel's login and TLS (``wss://`` wherever
the panel is served over HTTPS), and Asterisk's HTTP server never leaves loopback. The media
(DTLS-SRTP) goes between the browser and Asterisk's RTP ports, found by ICE.

The password is made when the user chooses «Телефон в браузере» and kept in the session only;
``/phone/account`` hands it to the page (never cached), which keeps it in memory."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp_session import get_session

from crm import shifts
from crm.rules import browser_phone
from pbx.services import SERVICES
from web.common import viewer

log = logging.getLogger(__name__)
OPEN_SOCKETS = web.AppKey("browser_phone_sockets", weakref.WeakSet)
ASTERISK_DOWN = web.AppKey("browser_phone_refusals", dict)  # {"refused": attempts since Asterisk went away}
PHONE_SECRET = "browser_phone"  # session key: {"extension", "password"}
NO_STORE = {"Cache-Control": "no-store"}


async def _account(request: web.Request) -> dict[str, str] | None:
    """This login's browser phone, if the user works on it now (else None)."""
    me = await viewer(request)
    secret = (await get_session(request)).get(PHONE_SECRET)
    if not isinstance(secret, dict):
        return None
    current = await shifts.current_extension(request.app[SERVICES].db, me.user_id)
    return secret if current == secret.get("extension") else None


async def account(request: web.Request) -> web.Response:
    """What the page registers with: its number, this login's password, the SIP domain."""
    secret = await _account(request)
    if secret is None:
        return web.json_response({"error": "Телефон в браузере не выбран на эту смену"}, status=404,
                                 headers=NO_STORE)
    settings = request.app[SERVICES].settings
    return web.json_response({"extension": secret["extension"], "password": secret["password"],
                              "domain": settings.asterisk.host, "ws_path": "/phone/ws"}, headers=NO_STORE)


def _same_origin(request: web.Request) -> bool:
    """A WebSocket carries the cookie whatever page opened it: only the panel's own pages may."""
    origin = request.headers.get("Origin", "")
    return origin.split("://", 1)[-1] == request.host


async def relay(request: web.Request) -> web.StreamResponse:
    """Relay the page's SIP WebSocket to Asterisk's, frame for frame, until either side closes."""
    if not _same_origin(request):
        raise web.HTTPForbidden(text="Другой источник")
    account = await _account(request)
    if account is None:
        raise web.HTTPForbidden(text="Телефон в браузере не выбран на эту смену")
    settings = request.app[SERVICES].settings.asterisk
    browser = web.WebSocketResponse(protocols=("sip",), heartbeat=25, max_msg_size=64 * 1024)
    await browser.prepare(request)
    request.app[OPEN_SOCKETS].add(browser)
    url = f"ws://{settings.host}:{settings.http_port}/ws"
    down = request.app[ASTERISK_DOWN]
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                url, protocols=("sip",), heartbeat=25, max_msg_size=64 * 1024) as asterisk:
            if down["refused"]:
                log.info("browser phone: Asterisk's WebSocket answers again (%d attempts refused)", down["refused"])
                down["refused"] = 0
            await _pump_both(browser, asterisk, str(account["extension"]))
    except (aiohttp.ClientError, OSError) as exc:
        # the pages try again every few seconds: one warning per outage, not one per attempt
        if not down["refused"]:
            log.warning("browser phone: Asterisk's WebSocket %s unreachable: %s", url, exc)
        down["refused"] += 1
    finally:
        await browser.close()
    return browser


async def _pump(source: Any, sink: Any, extension: str = "") -> None:
    """Frames from ``source`` to ``sink``; with ``extension`` (the browser's side), a frame that
    authenticates as another phone ends the relay."""
    async for msg in source:
        if msg.type == aiohttp.WSMsgType.TEXT:
            if extension and not browser_phone.frame_speaks_for(msg.data, extension):
                log.warning("browser phone %s: a frame authenticating as another phone; relay closed", extension)
                break
            await sink.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        else:
            break


async def _pump_both(browser: web.WebSocketResponse, asterisk: aiohttp.ClientWebSocketResponse,
                     extension: str) -> None:
    tasks = [asyncio.create_task(_pump(browser, asterisk, extension)), asyncio.create_task(_pump(asterisk, browser))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _close_all(app: web.Application) -> None:
    # an open phone would otherwise hold a stop for up to aiohttp's shutdown timeout
    for ws in list(app[OPEN_SOCKETS]):
        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)


def setup_browser_phone(app: web.Application) -> None:
    app[OPEN_SOCKETS] = weakref.WeakSet()
    app[ASTERISK_DOWN] = {"refused": 0}
    app.on_shutdown.append(_close_all)
    app.router.add_get("/phone/account", account)
    app.router.add_get("/phone/ws", relay)

"""#34: the phone in the browser below the browser. A user who chooses «Телефон в браузере» gets
an endpoint of their own (the lowest free of 1900-1999, kept), a new password per login that
only the session holds and /phone/account hands to that page (never cached); Asterisk gets a
WebRTC endpoint in the shipped browser-phone template; /phone/ws relays SIP frames to
Asterisk's WebSocket only for that user and only from the panel's own pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm import telephony as store
from crm import users
from crm.db import Database
from crm.rules import browser_phone
from crm.rules import telephony as rules
from pbx.asterisk.config import TEMPLATE_DIR
from pbx.asterisk.render import PJSIP_FILE, QUEUES_FILE, render_telephony
from tests.unit.panel_client import csrf, log_in, offline_settings


def test_the_lowest_free_number_of_the_range() -> None:
    assert browser_phone.next_extension({"101", "1042"}) == "1900"
    assert browser_phone.next_extension({"1900", "1901", "1903"}) == "1902"
    assert browser_phone.next_extension({str(n) for n in range(1900, 2000)}) is None
    assert browser_phone.is_browser_extension("1999") and not browser_phone.is_browser_extension("1899")


def test_a_frame_authenticates_only_as_the_browsers_own_phone() -> None:
    own = ('REGISTER sip:127.0.0.1 SIP/2.0\r\nFrom: <sip:1900@127.0.0.1>;tag=a\r\n'
           'Authorization: Digest algorithm=MD5, username="1900", realm="asterisk", nonce="n"\r\n\r\n')
    assert browser_phone.frame_speaks_for(own, "1900")
    assert browser_phone.frame_speaks_for("SIP/2.0 200 OK\r\nFrom: <sip:101@x>\r\n\r\n", "1900")
    assert browser_phone.frame_speaks_for("BYE sip:x@y SIP/2.0\r\n\r\n", "1900")  # in-dialog, no auth
    for other in (own.replace('username="1900"', 'username="101"'),
                  own.replace("Authorization: Digest", "proxy-authorization:DIGEST").replace('username="1900"',
                                                                                            "username=102"),
                  own + 'Authorization: Digest username="1901", realm="asterisk"\r\n'):
        assert not browser_phone.frame_speaks_for(other, "1900"), other


def test_a_desk_phone_cannot_take_a_browser_number() -> None:
    with pytest.raises(rules.TelephonyError) as exc:
        rules.check_phone({"extension": "1905"})
    assert "1900–1999" in str(exc.value)


def test_rendered_as_a_webrtc_endpoint_of_the_shipped_template() -> None:
    phone = rules.DeskPhone("1900", "Анна Админова", ("reception-ringall",), rules.md5_cred("1900", "pw"),
                            secure=True, browser=True)
    files = render_telephony([], phones=[phone])
    pjsip = files[PJSIP_FILE]
    assert "[1900](browser-phone)" in pjsip and "[1900](browser-phone-aor)" in pjsip
    assert "transport-tls" not in pjsip and "sdes" not in pjsip  # a browser is always DTLS, never SDES
    assert "member => PJSIP/1900,0,1900,PJSIP/1900" in files[QUEUES_FILE]
    shipped = (TEMPLATE_DIR / "pjsip.conf").read_text()
    template = shipped.split("[browser-phone](!,desk-phone)")[1].split("\n\n")[0]
    for line in ("transport = transport-ws", "webrtc = yes", "allow = ulaw,alaw,opus", "dtls_cert_file ="):
        assert line in template
    assert "protocol = ws" in shipped.split("[transport-ws]")[1].split("\n\n")[0]
    modules = (TEMPLATE_DIR / "modules.conf").read_text()
    for module in ("res_pjsip_transport_websocket.so", "res_srtp.so", "codec_opus_open_source.so"):
        assert f"load => {module}" in modules


async def test_one_number_per_user_and_a_new_password_each_login(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        anna = await users.create_user(db, "anna", "pw-anna-123456")
        olga = await users.create_user(db, "olga", "pw-olga-123456")
        ext, first = await store.open_browser_phone(db, anna, "Анна", ("reception-ringall",), 1.0) or ("", "")
        assert ext == "1900"
        again, second = await store.open_browser_phone(db, anna, "Анна", ("reception-ringall",), 2.0) or ("", "")
        assert again == "1900" and second != first
        # a user's name becomes the phone's caller ID: nothing of it can break the config
        theirs, _ = await store.open_browser_phone(db, olga, 'Ольга "Q"\n[x];#include', (), 3.0) or ("", "")
        assert theirs == "1901"
        phones = {p.extension: p for p in await store.desk_phones(db)}
        assert phones["1900"].browser and phones["1900"].md5_cred == rules.md5_cred("1900", second)
        assert phones["1900"].queues == ("reception-ringall",)
        assert phones["1901"].label == "Ольга Q x include"
        assert '"Ольга Q x include" <1901>' in render_telephony([], phones=list(phones.values()))[PJSIP_FILE]
        assert second not in str([tuple(r) for r in await db.fetchall("SELECT * FROM desk_phones")])
        await store.close_browser_phone(db, anna, 4.0)
        phones = {p.extension: p for p in await store.desk_phones(db)}
        assert phones["1900"].md5_cred == store.CLOSED  # no password matches it any more
    finally:
        await db.close()


async def fake_asterisk() -> tuple[web.AppRunner, int, list[str]]:
    """Asterisk's WebSocket transport as far as the relay sees it: the "sip" subprotocol, and
    every frame answered with "ack:" + the frame."""
    seen: list[str] = []

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(protocols=("sip",))
        await sock.prepare(request)
        async for msg in sock:
            seen.append(msg.data)
            await sock.send_str("ack:" + msg.data)
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port, seen


@asynccontextmanager
async def panel(state_dir: Path, asterisk_port: int) -> AsyncIterator[tuple[Any, TestClient]]:
    from pbx.app import SERVICES, Adapters, build_app

    settings = offline_settings(state_dir)
    settings = replace(settings, asterisk=replace(settings.asterisk, http_port=asterisk_port))
    app = build_app(settings, run_escort=False, adapters=Adapters.offline())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        db = app[SERVICES].db
        await users.create_user(db, "anna", "pw-anna-123456", full_name="Анна Админова")
        yield db, client


async def test_the_page_gets_its_account_and_a_relay_to_asterisk(tmp_path: Path) -> None:
    runner, port, seen = await fake_asterisk()
    try:
        async with panel(tmp_path, port) as (db, client):
            origin = {"Origin": f"http://{client.server.host}:{client.server.port}"}
            token = await log_in(client, "anna", "pw-anna-123456")  # "none": no browser phone yet
            assert (await client.get("/phone/account")).status == 404
            assert (await client.get("/phone/ws", headers=origin)).status == 403
            page = await client.post("/shift", data={"extension": "browser", "csrf_token": token})
            assert page.status == 200 and page.url.path == "/"
            account = await client.get("/phone/account")
            assert account.status == 200 and account.headers["Cache-Control"] == "no-store"
            data = await account.json()
            assert data["extension"] == "1900" and data["ws_path"] == "/phone/ws"
            [phone] = [p for p in await store.desk_phones(db) if p.browser]
            assert phone.md5_cred == rules.md5_cred("1900", data["password"])
            home = await (await client.get("/")).text()
            assert 'id="browser-phone"' in home and "/static/vendor/jssip.min.js" in home
            assert data["password"] not in home  # only /phone/account carries it
            # another site's page cannot open the user's SIP socket with their cookie
            assert (await client.get("/phone/ws", headers={"Origin": "http://evil.example"})).status == 403
            async with client.ws_connect("/phone/ws", protocols=("sip",), headers=origin) as ws:
                assert ws.protocol == "sip"
                await ws.send_str("REGISTER sip:127.0.0.1 SIP/2.0\r\n\r\n")
                reply = await ws.receive(timeout=5)
                assert reply.type == aiohttp.WSMsgType.TEXT and reply.data.startswith("ack:REGISTER")
            assert seen == ["REGISTER sip:127.0.0.1 SIP/2.0\r\n\r\n"]
            # trying another phone's password through the relay ends it; nothing reaches Asterisk
            async with client.ws_connect("/phone/ws", protocols=("sip",), headers=origin) as ws:
                await ws.send_str('REGISTER sip:x SIP/2.0\r\nAuthorization: Digest username="101"\r\n\r\n')
                assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert len(seen) == 1
            # a desk phone chosen again: the account is gone from the page, the password ends
            await client.post("/shift", data={"extension": "none", "csrf_token": token})
            assert (await client.get("/phone/account")).status == 404
            [phone] = [p for p in await store.desk_phones(db) if p.browser]
            assert phone.md5_cred == store.CLOSED
            # logging out ends the browser's password
            await client.post("/shift", data={"extension": "browser", "csrf_token": token})
            await client.post("/logout", data={"csrf_token": await csrf(client, "/")})
            [phone] = [p for p in await store.desk_phones(db) if p.browser]
            assert phone.md5_cred == store.CLOSED
    finally:
        await runner.cleanup()


async def test_the_shift_question_lists_no_ones_browser_phone_as_a_desk_phone(tmp_path: Path) -> None:
    async with panel(tmp_path, 1) as (db, client):
        other = await users.create_user(db, "olga", "pw-olga-123456")
        await store.open_browser_phone(db, other, "Ольга", (), 1.0)
        await log_in(client, "anna", "pw-anna-123456")
        page = await (await client.get("/shift")).text()
        assert 'value="browser"' in page and "Телефон в браузере" in page
        assert 'value="1900"' not in page  # Ольга's browser is hers alone


async def test_asterisk_away_closes_the_page_socket_with_one_warning(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    async with panel(tmp_path, closed) as (_, client):
        origin = {"Origin": f"http://{client.server.host}:{client.server.port}"}
        token = await log_in(client, "anna", "pw-anna-123456")
        await client.post("/shift", data={"extension": "browser", "csrf_token": token})
        for _ in range(3):  # the page tries again every few seconds
            async with client.ws_connect("/phone/ws", protocols=("sip",), headers=origin) as ws:
                assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1


async def test_the_integrator_sets_a_browser_phones_queues_and_branch(tmp_path: Path) -> None:
    from tests.unit.panel_client import settings_admin_panel

    async with settings_admin_panel(tmp_path) as (db, client):
        anna = await users.create_user(db, "anna", "pw-anna-123456", full_name="Анна Админова")
        await store.open_browser_phone(db, anna, "Анна Админова", ("reception-ringall", "reception-linear"), 1.0)
        token = await csrf(client, "/settings/telephony")
        page = await (await client.get("/settings/telephony")).text()
        assert 'data-phone="1900"' in page and 'data-browser="1"' in page
        saved = await client.post("/settings/telephony", data={
            "csrf_token": token, "action": "phone_save", "extension": "1900", "label": "чужое имя",
            "queues": "reception-linear"})
        assert saved.status == 200 and 'class="password"' not in await saved.text()  # no password to show
        [phone] = [p for p in await store.desk_phones(db) if p.browser]
        assert phone.queues == ("reception-linear",) and phone.label == "Анна Админова"
        refused = await client.post("/settings/telephony", data={
            "csrf_token": token, "action": "phone_save", "extension": "1950", "queues": "reception-linear"})
        assert "Нет телефона в браузере с номером 1950" in await refused.text()

"""A clinic's own SIP provider set up in the panel (issue #29), against the real Asterisk and a
SIPp provider that demands REGISTER with digest: the panel says «применено» only once Asterisk
has the trunk, shows registered / refused with the provider's reason, and a call the provider
delivers (the account's login in the Request-URI, the clinic number in To) reaches its queue
and is recorded under that number. An apply never cuts a call in progress."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from crm import callbacks, toll, users
from crm.demo import load_demo
from crm.rules import hours
from pbx.outbound.originate import OriginateRequest, originate
from pbx.outbound.sipp import (
    free_udp_ports,
    register_phone,
    start_operator_call,
    start_provider,
)
from tests.integration.helpers import billsec_agrees, start_phones, stop_all, wait_call, wait_cdr

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
PROVIDER_IP = "127.0.0.5"
LOGIN, PASSWORD = "clinic77", "s3cr;et#X"  # a ';' and a '#' reach pjsip.conf escaped
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
STATUS = re.compile(r'class="status"[^<]*')


class Panel:
    """The panel as a browser uses it: a settings admin's session, forms with their CSRF token."""

    def __init__(self, services: Any) -> None:
        self.base = f"http://127.0.0.1:{services.web_port}"
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def token(self, path: str) -> str:
        async with self.http.get(self.base + path) as r:
            match = CSRF.search(await r.text())
        assert match, path
        return match.group(1)

    async def log_in(self) -> None:
        await self.http.post(self.base + "/login", data={"login": "integrator", "password": "длинный-пароль-1",
                                                         "csrf_token": await self.token("/login")})
        await self.http.post(self.base + "/shift", data={"extension": "none", "csrf_token": await self.token("/shift")})

    async def post(self, data: dict[str, str]) -> tuple[int, str]:
        data = {**data, "csrf_token": await self.token("/settings/telephony")}
        async with self.http.post(self.base + "/settings/telephony", data=data) as r:
            return r.status, await r.text()

    async def page(self) -> str:
        async with self.http.get(self.base + "/settings/telephony") as r:
            assert r.status == 200
            return await r.text()

    async def wait_status(self, code: str, timeout: float = 25.0) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        text = ""
        while asyncio.get_running_loop().time() < deadline:
            text = await self.page()
            if f'data-status="{code}"' in text:
                return text
            await asyncio.sleep(0.5)
        raise AssertionError(f"status {code} never shown: {STATUS.findall(text)}")


@pytest.fixture
async def panel(server) -> Any:
    services, _ = server
    await load_demo(services.db)
    await users.create_user(services.db, "integrator", "длинный-пароль-1", full_name="Интегратор", role="settings_admin")
    p = Panel(services)
    await p.log_in()
    yield p
    await p.http.close()


def provider_form(port: int, password: str = PASSWORD, **extra: str) -> dict[str, str]:
    return {"action": "provider_save", "name": "Провайдер «Тест»", "server": PROVIDER_IP, "port": str(port),
            "auth": "register", "login": LOGIN, "password": password, "did_from_place": "to",
            "codecs": "alaw,ulaw", "enabled": "1", **extra}


async def first_channel(log: Any, prefix: str) -> str:
    """The linkedid of the call whose first channel starts with ``prefix``."""
    e = await log.wait_for(lambda e: e.name == "Newchannel" and e.headers["Channel"].startswith(prefix))
    return str(e.headers["Linkedid"])


async def test_provider_registers_and_its_calls_reach_the_queue(server, panel, asterisk, tmp_path: Path) -> None:
    services, log = server
    port = free_udp_ports(1, PROVIDER_IP, step=1)
    registrar = await start_provider(tmp_path, PROVIDER_IP, port, LOGIN, PASSWORD)
    status, _ = await panel.post(provider_form(port, dial_format="8"))
    assert status == 200  # the redirect to the page, followed
    page = await panel.wait_status("registered")
    assert 'data-applied="1"' in page and "Asterisk подтвердил" in page
    assert "зарегистрирован" in page
    assert "REGISTER" in registrar.messages and "Authorization: Digest" in registrar.messages

    # the provider delivers a call: its login in the Request-URI, the clinic number in To
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 800}})
    call = await start_operator_call(services.settings, "+79161234567", LOGIN, tmp_path, talk_ms=3000,
                                     source_ip=PROVIDER_IP, to_user="74951110002", name="provider-call")
    linkedid = await first_channel(log, "PJSIP/trunk-")
    assert await call.wait(40) == 0, call.errors
    await stop_all(*phones.values(), wait=3)  # the call is over: a phone still up never got an INVITE
    record = await wait_call(services, linkedid)
    assert record["direction"] == "incoming" and record["did"] == "74951110002"
    assert record["answered_by_ext"] == "101" and record["phone_e164"] == "+79161234567"
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid)
    assert rows[0]["channel"].startswith("PJSIP/trunk-")

    # the demo branch calls out by this provider showing its second number (the panel's choice)
    branch = re.search(r'data-branch="(\d+)"', await panel.page()).group(1)
    provider_id = re.search(r'data-provider="(\d+)"', page).group(1)
    status, _ = await panel.post({"action": "branch_out_save", "branch": branch, "out_provider": provider_id,
                                  "out_line": "74951110002"})
    assert status == 200 and 'data-applied="1"' in await panel.page()
    # click-to-call leaves by it, the number as it wants it (8…): it challenges the INVITE (401)
    # and checks the answer
    # 101 answers, the patient 1 s after the dialling, 101 hangs up 4.5 s after its answer
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 500, "hangup_ms": 4500}}, others=False)
    linkedid = await originate(services.ami, OriginateRequest("101", "79031112233", user_id=None))
    await stop_all(*phones.values(), wait=30)
    record = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid)
    assert record["direction"] == "outgoing" and record["call_type"] == "outgoing"
    assert record["phone_e164"] == "+79031112233" and record["talk_seconds"] > 2.5
    trunk = [r for r in rows if r["dstchannel"].startswith("PJSIP/trunk-")]
    assert trunk and trunk[0]["disposition"] == "ANSWERED", rows
    assert billsec_agrees(trunk[0]["billsec"], record["talk_seconds"]), (rows, record)
    sent = registrar.messages
    assert "INVITE sip:89031112233@" + PROVIDER_IP in sent
    invite = sent.split("INVITE sip:89031112233", 1)[1]
    assert 'Authorization: Digest username="clinic77"' in invite
    # the patient sees the branch's number (From carries the login: P-Asserted-Identity), and the
    # call is counted on it
    assert re.search(r"P-Asserted-Identity: [^\n]*<sip:74951110002@", invite), invite[:1500]
    assert record["did"] == "74951110002"
    # toll fraud (#30): a call from the desk phone to an international premium number never
    # reaches the provider; the refusal is audited
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 300, "hangup_ms": 8000}}, others=False)
    linkedid = await originate(services.ami, OriginateRequest("101", "+88212345678", user_id=None))
    await stop_all(*phones.values(), wait=20)
    trips = await toll.recent_trips(services.db, 0)
    assert [(t["actor"], t["object_id"]) for t in trips] == [("телефон 101", "+88212345678")], trips
    assert "88212345678" not in registrar.messages
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid)
    assert not [r for r in rows if r["dstchannel"].startswith("PJSIP/trunk-")], rows
    registrar.kill()

    # removed in the panel: gone from Asterisk once it says so
    status, _ = await panel.post({"action": "provider_delete", "provider": provider_id})
    page = await panel.page()
    assert 'data-applied="1"' in page and "trunk-" not in asterisk.rx("pjsip show endpoints")


async def test_wrong_password_is_refused_with_the_providers_reason(server, panel, tmp_path: Path) -> None:
    port = free_udp_ports(1, PROVIDER_IP, step=1)
    registrar = await start_provider(tmp_path, PROVIDER_IP, port, LOGIN, PASSWORD)
    status, _ = await panel.post(provider_form(port, password="not-the-password"))
    assert status == 200
    page = await panel.wait_status("refused")
    assert "отказ" in page and "403" in page, STATUS.findall(page)
    # the right password, saved again (the form leaves the stored one unless a new one is typed)
    provider_id = re.search(r'data-provider="(\d+)"', page).group(1)
    status, _ = await panel.post(provider_form(port, provider=provider_id))
    await panel.wait_status("registered")
    registrar.kill()


async def test_an_apply_does_not_cut_a_call(server, panel, tmp_path: Path) -> None:
    services, log = server
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 500}})
    call = await start_operator_call(services.settings, "+79161234567", "74951110002", tmp_path, talk_ms=7000)
    await log.wait_for(lambda e: e.name == "BridgeEnter" and e.headers["Channel"].startswith("PJSIP/101-"))
    linkedid = (await log.wait_for(lambda e: e.name == "BridgeEnter")).headers["Linkedid"]
    port = free_udp_ports(1, PROVIDER_IP, step=1)
    status, page = await panel.post(provider_form(port, auth="ip", login="", password=""))
    assert status == 200 and 'data-applied="1"' in await panel.page()
    assert await call.wait(40) == 0, call.errors
    await stop_all(*phones.values())
    record = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid)
    assert record["talk_seconds"] > 6.5
    assert billsec_agrees(max(int(r["billsec"]) for r in rows), record["talk_seconds"]), rows


async def test_a_number_added_in_the_panel_routes_its_calls(server, panel, tmp_path: Path) -> None:
    """A clinic number typed as a person writes it, sent by the provider as 8…: the call rings
    the queue the panel chose and is recorded under the number as the CRM stores it."""
    services, log = server
    status, _ = await panel.post({"action": "number_save", "did": "+7 (495) 765-43-21", "queue": "reception-linear",
                                  "ad_channel": "Яндекс.Карты"})
    assert status == 200
    page = await panel.page()
    assert 'data-did="74957654321"' in page and 'data-applied="1"' in page
    port = free_udp_ports(1, PROVIDER_IP, step=1)
    status, _ = await panel.post(provider_form(port, auth="ip", login="", password="", did_from_place="ruri"))
    assert 'data-applied="1"' in await panel.page()
    # linear: 101 first, and it answers
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 800}})
    call = await start_operator_call(services.settings, "+79161234567", "84957654321", tmp_path, talk_ms=2000,
                                     source_ip=PROVIDER_IP, name="provider-call")
    linkedid = await first_channel(log, "PJSIP/trunk-")
    assert await call.wait(40) == 0, call.errors
    await stop_all(*phones.values())
    record = await wait_call(services, linkedid)
    assert record["did"] == "74957654321" and record["answered_by_ext"] == "101"
    assert [leg["extension"] for leg in record["legs"]] == ["101"]  # in order: 102 and 103 never rang
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid)
    assert rows[0]["clinic_did"] == "74957654321"


async def test_a_call_outside_the_hours_hears_the_message_and_becomes_a_callback_request(
        server, panel, tmp_path: Path) -> None:
    services, log = server
    today = datetime.now(ZoneInfo(services.settings.time_zone)).weekday()
    closed_all_day = f"{hours.WEEKDAYS[(today + 3) % 7]} 09:00-10:00"  # never now
    status, _ = await panel.post({"action": "number_save", "did": "+7 495 765-43-21", "queue": "reception-ringall",
                                  "hours": closed_all_day, "closed_message": "Клиника сейчас закрыта. Мы вам перезвоним.",
                                  "closed_callback": "1"})
    assert status == 200
    page = await panel.page()
    assert 'data-did="74957654321"' in page and 'data-open="0"' in page and 'data-applied="1"' in page
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 500}})  # must not ring
    call = await start_operator_call(services.settings, "+79161234567", "84957654321", tmp_path, talk_ms=15000)
    linkedid = await first_channel(log, "PJSIP/operator-")
    await log.wait_for(lambda e: e.name == "Newexten" and e.headers.get("Application") == "Playback"
                       and e.headers.get("Linkedid") == linkedid)
    await call.wait(40)  # the clinic ends the call after its message (SIPp counts the BYE it got as a failure)
    await stop_all(*phones.values(), wait=1)
    record = await wait_call(services, linkedid)
    assert record["did"] == "74957654321" and record["direction"] == "incoming" and record["legs"] == []
    assert record["call_type"] == "missed" and record["phone_e164"] == "+79161234567", record
    request = await services.db.fetchone(
        "SELECT source_name, state, comment FROM callback_requests WHERE phone = ?", ("+79161234567",))
    assert request is not None and request["source_name"] == callbacks.AFTER_HOURS_SOURCE and request["state"] == "open"


async def test_a_phone_added_in_the_panel_registers_takes_queue_calls_and_a_reset_locks_it_out(
        server, panel, asterisk, tmp_path: Path) -> None:
    services, log = server
    status, page = await panel.post({"action": "phone_save", "extension": "104", "label": "Ресепшн 4",
                                     "queues": "reception-ringall"})
    shown = re.search(r'class="password">([A-Za-z0-9]{16})<', page)
    assert status == 200 and shown, page[:2000]
    assert 'data-applied="1"' in await panel.page()
    # the phone itself takes its account from its provisioning URL (Yealink's file), registers
    # with it and answers its calls
    path = re.search(r'class="provision">http://[^/<]+(/provision/[A-Za-z0-9_-]+/)<', page).group(1)
    async with panel.http.get(panel.base + path + "805ec0123456.cfg") as r:
        assert r.status == 200
        password = re.search(r"^account\.1\.password = (\S+)$", await r.text(), re.M).group(1)
    assert password == shown.group(1)
    phone_port = free_udp_ports(1, step=1)
    reg = await register_phone(services.settings, "104", password, tmp_path, phone_port, hold_ms=25000, answer_ms=500)
    for _ in range(100):
        if f"104/sip:104@127.0.0.1:{phone_port}" in asterisk.rx("pjsip show contacts"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"104 never registered: {reg.errors}")
    assert services.telephony is not None
    await services.telephony.refresh()
    assert re.search(r'data-phone="104">.*?data-online="1"', await panel.page(), re.S)
    # a queue call: the demo phones ring and never answer, 104 answers
    others = await start_phones(services, tmp_path, {})
    call = await start_operator_call(services.settings, "+79161234567", "74951110001", tmp_path, talk_ms=2000)
    linkedid = await first_channel(log, "PJSIP/operator-")
    assert await call.wait(40) == 0, call.errors
    await stop_all(*others.values(), wait=10)
    record = await wait_call(services, linkedid)
    assert record["answered_by_ext"] == "104", record
    # a new password: the old one no longer registers
    status, page = await panel.post({"action": "phone_password", "extension": "104"})
    assert status == 200 and password not in page and 'class="password"' in page
    assert 'data-applied="1"' in await panel.page()
    old = await register_phone(services.settings, "104", password, tmp_path, free_udp_ports(1, step=1), hold_ms=500)
    assert await old.wait(20) != 0  # challenged again instead of 200
    reg.kill()
    # removed: gone from Asterisk and from the queue
    status, _ = await panel.post({"action": "phone_delete", "extension": "104"})
    assert 'data-applied="1"' in await panel.page()
    assert "104" not in [line.split()[1] for line in asterisk.rx("pjsip show endpoints").splitlines()
                         if line.strip().startswith("Endpoint:") and len(line.split()) > 1]
    assert "PJSIP/104" not in asterisk.rx("queue show reception-ringall")


async def test_a_panel_queue_whose_wait_runs_out_makes_a_callback_request(server, panel, asterisk, tmp_path: Path) -> None:
    services, log = server
    status, _ = await panel.post({"action": "queue_save", "title": "Дневная", "strategy": "linear",
                                  "ring_seconds": "5", "max_wait": "10", "on_timeout": "callback"})
    assert status == 200
    page = await panel.page()
    name = re.search(r'data-queue="(queue-\d+)"', page).group(1)
    status, _ = await panel.post({"action": "number_save", "did": "+7 495 765-43-21", "queue": name})
    assert 'data-applied="1"' in await panel.page()
    assert "'linear' strategy" in asterisk.rx(f"queue show {name}")  # Asterisk has the panel's queue
    call = await start_operator_call(services.settings, "+79161234567", "84957654321", tmp_path, talk_ms=40000)
    linkedid = await first_channel(log, "PJSIP/operator-")
    await log.wait_for(lambda e: e.name == "QueueCallerLeave" and e.headers.get("Queue") == name, timeout=30)
    await call.wait(40)  # the clinic ends the call once the request is made
    record = await wait_call(services, linkedid)
    assert record["did"] == "74957654321" and record["call_type"] == "missed", record
    request = await services.db.fetchone(
        "SELECT source_name, state FROM callback_requests WHERE phone = ?", ("+79161234567",))
    assert request is not None and request["state"] == "open"


async def test_a_provider_over_tls_registers_with_its_certificate_checked(server, panel, tmp_path: Path) -> None:
    from tests.conftest import TEST_STATE
    from tests.tls_provider import TLS_PROVIDER_IP, TlsRegistrar, make_test_ca

    _, cert, key = make_test_ca(TEST_STATE.parent / "test-tls")
    registrar = TlsRegistrar()
    port = await registrar.start(cert, key, TLS_PROVIDER_IP)
    try:
        status, _ = await panel.post({**provider_form(port), "name": "Провайдер TLS", "server": TLS_PROVIDER_IP,
                                      "transport": "tls"})
        assert status == 200
        page = await panel.wait_status("registered")
        assert "TLS" in page
        register = next(r for r in registrar.requests if r.startswith("REGISTER"))
        assert "SIP/2.0/TLS" in register and f"sip:{TLS_PROVIDER_IP}:{port};transport=tls" in register
    finally:
        await registrar.stop()


async def test_an_encrypted_phone_registers_over_tls(server, panel, asterisk) -> None:
    from tests.tls_provider import tls_register

    services, _ = server
    status, page = await panel.post({"action": "phone_save", "extension": "106", "label": "Кабинет 6", "secure": "1"})
    password = re.search(r'class="password">([A-Za-z0-9]{16})<', page).group(1)
    assert status == 200 and 'data-applied="1"' in await panel.page()
    a = services.settings.asterisk
    box_cert = services.settings.asterisk_etc / "keys" / "clinic-pbx.crt"
    answers = await tls_register(a.host, a.tls_port or a.sip_port + 1, "106", password, box_cert)
    assert answers == ["SIP/2.0 401 Unauthorized", "SIP/2.0 200 OK"], answers
    assert "106/sip:106@" in asterisk.rx("pjsip show contacts")
    endpoint = asterisk.rx("pjsip show endpoint 106")
    assert re.search(r"media_encryption\s*:\s*sdes", endpoint) and re.search(r"transport\s*:\s*transport-tls", endpoint)

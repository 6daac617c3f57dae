"""#29: the panel's providers -> Asterisk's configuration. Every field that reaches a config file
is refused or escaped (a newline, ``[section]``, ``;``, ``#include``, quotes, non-ASCII);
refusals name their field in Russian; the renderer writes sections made of ids only; the
applier says «применено» only after Asterisk shows every object, and puts the previous files
back (reloading them) when it does not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from crm import telephony as store
from crm.db import Database
from crm.rules import telephony as rules
from crm.rules.call_records import TrackerConfig
from pbx.asterisk.apply import TelephonyApplier
from pbx.asterisk.render import DIALPLAN_FILE, PJSIP_FILE, render_telephony

GOOD = {"name": "Манго Телеком", "server": "sip.mango.ru", "login": "clinic1", "password": "Pa55-word",
        "port": "5060", "did_from": "ruri"}
HOSTILE = ["a\nb", "x]\n[evil]", "a;b", "#include /etc/passwd", '"quoted"', "пароль", "a b", "a\r\nb", "[s]"]
FIELDS = ["server", "login", "auth_user", "from_user", "from_domain", "outbound_proxy", "did_from", "addresses",
          "port", "codecs", "password"]


def test_a_good_provider_passes_with_defaults() -> None:
    p = rules.check_provider(GOOD, 7)
    assert (p.endpoint, p.port, p.transport, p.auth, p.expiry, p.codecs) == (
        "trunk-7", 5060, "udp", "register", 300, ("alaw", "ulaw"))


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_refused_or_cannot_escape_their_line(field: str, value: str) -> None:
    try:
        p = rules.check_provider({**GOOD, field: value}, 1)
    except rules.TelephonyError as exc:
        assert exc.field == field and str(exc)  # the field is named, the message says why
        return
    # accepted (a password may hold ';' and '#', a header name is a word): the rendered
    # files still have exactly the sections of a clean provider, each value on its own line
    files = render_telephony([p])
    clean = render_telephony([rules.check_provider(GOOD, 1)])
    for name in files:
        assert re.findall(r"^\[.*$", files[name], re.M) == re.findall(r"^\[.*$", clean[name], re.M)
        assert not re.search(r"^\s*#", files[name], re.M)
        assert len(files[name].splitlines()) == len(clean[name].splitlines())
    assert "\\;" in files[PJSIP_FILE] or ";" not in value


def test_a_provider_over_tls_uses_the_tls_transport() -> None:
    p = rules.check_provider({**GOOD, "transport": "tls", "port": "5061"}, 3)
    pjsip = render_telephony([p])[PJSIP_FILE]
    assert "transport = transport-tls" in pjsip and "server_uri = sip:sip.mango.ru:5061\\;transport=tls" in pjsip  # the config reads \\; as ;


def test_refusals_name_the_field() -> None:
    cases = [({"server": ""}, "server"), ({"port": "70000"}, "port"), ({"password": ""}, "password"),
             ({"login": ""}, "login"), ({"name": ""}, "name"), ({"codecs": "mp3"}, "codecs"),
             ({"addresses": "10.0.0.1 not/an/address"}, "addresses"), ({"transport": "sctp"}, "transport"),
             ({"expiry": "5"}, "expiry")]
    for change, field in cases:
        with pytest.raises(rules.TelephonyError) as exc:
            rules.check_provider({**GOOD, **change})
        assert exc.value.field == field, change


def test_a_provider_by_address_needs_no_login() -> None:
    p = rules.check_provider({"name": "Ростелеком", "server": "10.1.2.3", "auth": "ip",
                              "addresses": "10.1.2.0/24, 10.1.3.4"}, 2)
    pjsip = render_telephony([p])[PJSIP_FILE]
    assert "type = registration" not in pjsip and "outbound_auth" not in pjsip
    assert "match = 10.1.2.3,10.1.2.0/24,10.1.3.4" in pjsip


def test_the_rendered_registration_keeps_trying_and_separates_accounts() -> None:
    p = rules.check_provider({**GOOD, "password": "p;w#1", "expiry": "120", "retry": "20"}, 3)
    pjsip = render_telephony([p])[PJSIP_FILE]
    assert "password = p\\;w#1" in pjsip  # Asterisk reads '\;' back as ';'
    for line in ("[trunk-3-reg]", "auth_rejection_permanent = no", "max_retries = 100000", "line = yes",
                 "endpoint = trunk-3", "client_uri = sip:clinic1@sip.mango.ru:5060", "expiration = 120"):
        assert line in pjsip
    assert "Манго" not in pjsip  # the panel's name never reaches a config


def test_the_clinic_number_is_read_where_the_provider_puts_it() -> None:
    ruri = render_telephony([rules.check_provider(GOOD, 1)])[DIALPLAN_FILE]
    assert "Set(CLINIC_H=${EXTEN})" in ruri
    to = render_telephony([rules.check_provider({**GOOD, "did_from": "to"}, 1)])[DIALPLAN_FILE]
    assert "PJSIP_HEADER(read,To)" in to
    header = render_telephony([rules.check_provider({**GOOD, "did_from": "CALLED_DID"}, 1)])[DIALPLAN_FILE]
    assert "PJSIP_HEADER(read,CALLED_DID)" in header


def test_outgoing_calls_leave_by_the_marked_provider_else_the_first() -> None:
    a, b = rules.check_provider(GOOD, 1), rules.check_provider({**GOOD, "name": "b", "outgoing": "1"}, 2)
    assert "${CLINIC_BRANCH_TRUNK}:trunk-2)" in render_telephony([a, b])[DIALPLAN_FILE]
    assert "${CLINIC_BRANCH_TRUNK}:trunk-1)" in render_telephony([a])[DIALPLAN_FILE]
    assert "${CLINIC_BRANCH_TRUNK}:operator)" in render_telephony([])[DIALPLAN_FILE]  # the demo's trunk
    off = rules.check_provider({**GOOD, "enabled": "0"}, 4)
    assert "trunk-4" not in render_telephony([off])[PJSIP_FILE]


def test_every_provider_endpoint_is_a_trunk_to_the_call_tracker() -> None:
    trunks = TrackerConfig().trunks
    assert "trunk-12" in trunks and "operator" in trunks and "101" not in trunks


def test_a_refusal_reason_comes_from_asterisks_log() -> None:
    lines = ["[..] WARNING[1] res_pjsip_outbound_registration.c: 403 Forbidden fatal response received from "
             "'sip:1.2.3.4:5060' on registration attempt to 'sip:clinic1@1.2.3.4:5060', retrying in '60' seconds",
             "res_pjsip_outbound_registration.c: No response received from 'sip:h:5060' on registration attempt "
             "to 'sip:x@h:5060', retrying in '30'"]
    assert rules.registration_reasons(lines) == {"sip:clinic1@1.2.3.4:5060": "403 Forbidden", "sip:x@h:5060": "нет ответа"}
    p = rules.check_provider(GOOD, 1)
    assert rules.trunk_status(p, "Registered", "403 Forbidden", "", None).code == "registered"
    assert rules.trunk_status(p, "Rejected", "403 Forbidden", "", None).text == "отказ: 403 Forbidden"
    assert rules.trunk_status(p, "Unregistered", "", "Unreachable", None).code == "unreachable"


class FakeAmi:
    """Asterisk's answers about what it has; ``refuse`` leaves that object out after a reload."""

    def __init__(self, refuse: str = "") -> None:
        self.refuse, self.commands, self.endpoints, self.regs = refuse, [], set(), set()
        self.etc: Path | None = None
        self.connected = True

    async def action(self, a: dict[str, Any], timeout: float = 10.0) -> Any:
        name = a["Action"]
        if name == "Command":
            self.commands.append(a["Command"])
            text = (self.etc / PJSIP_FILE).read_text() if self.etc else ""
            self.endpoints = {e for e in re.findall(r"^\[(trunk-\d+)\]\(", text, re.M) if e != self.refuse}
            self.regs = set(re.findall(r"^\[(trunk-\d+-reg)\]", text, re.M)) - {self.refuse}
            return {"Response": "Success", "Output": "reloaded"}
        if name == "PJSIPShowEndpoints":
            return [{"Event": "EndpointList", "ObjectName": e} for e in self.endpoints] + [{"Event": "EndpointListComplete"}]
        if name == "PJSIPShowRegistrationsOutbound":
            return [{"Event": "OutboundRegistrationDetail", "ObjectName": r, "Status": "Registered"} for r in self.regs]
        if name == "ShowDialPlan":
            return [{"Response": "Success"}]
        return {"Response": "Success"}


async def test_applied_only_when_asterisk_shows_it_else_the_previous_files_return(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        etc = tmp_path / "etc"
        etc.mkdir()
        ami = FakeAmi()
        ami.etc = etc
        applier = TelephonyApplier(etc, db, ami, confirm_timeout=0.3)
        start = await store.revision(db)
        first = await store.save_provider(db, rules.check_provider(GOOD), 1.0, actor="t")
        state = await applier.apply()
        assert state.revision == start + 1 and state.error == "" and applier.providers[0].id == first
        assert ami.commands == ["module reload res_pjsip.so", "dialplan reload", "module reload app_queue.so"]
        working = (etc / PJSIP_FILE).read_text()
        assert f"[trunk-{first}-reg]" in working

        ami.refuse = "trunk-2"  # Asterisk will not take the second provider
        await store.save_provider(db, rules.check_provider({**GOOD, "name": "второй", "server": "10.0.0.9"}), 2.0)
        state = await applier.apply()
        assert state.revision == start + 1 and state.failed_revision == start + 2 and "trunk-2" in state.error
        assert (etc / PJSIP_FILE).read_text() == working  # the previous working files are back
        # the files that changed, and only those, are reloaded: the new ones, then the old ones again
        assert ami.commands[3:] == ["module reload res_pjsip.so", "dialplan reload"] * 2
        calls = len(ami.commands)
        await applier.apply_if_changed()
        assert len(ami.commands) == calls  # a refused revision is not retried by itself
        rows = await db.fetchall("SELECT action FROM audit_log ORDER BY id")
        assert [r[0] for r in rows] == ["provider_save", "provider_save"]
    finally:
        await db.close()


async def test_the_page_is_for_settings_admins_and_names_a_refused_field(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from crm import users
    from pbx.app import SERVICES, Adapters, build_app
    from tests.unit.panel_client import csrf, log_in, offline_settings

    app = build_app(offline_settings(tmp_path), run_escort=False, adapters=Adapters.offline())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        db = app[SERVICES].db
        start = await store.revision(db)
        await users.create_user(db, "admin", "pw-admin-12")
        await users.create_user(db, "boss", "pw-boss-123", role="settings_admin")
        await log_in(client, "admin", "pw-admin-12")
        assert (await client.get("/settings/telephony")).status == 403
        await client.post("/logout", data={"csrf_token": await csrf(client, "/")})
        await log_in(client, "boss", "pw-boss-123")
        token = await csrf(client, "/settings/telephony")
        bad = await client.post("/settings/telephony", data={
            "csrf_token": token, "action": "provider_save", "name": "x", "server": "sip.ru\n[evil]",
            "login": "a", "password": "b", "enabled": "1"})
        text = await bad.text()
        assert bad.status == 400 and "сервер провайдера" in text and 'name="server"' in text
        assert await store.all_providers(db) == []
        ok = await client.post("/settings/telephony", data={
            "csrf_token": token, "action": "provider_save", "name": "Манго", "server": "sip.mango.ru",
            "login": "a", "password": "b;c", "did_from_place": "header", "did_header": "Diversion", "enabled": "1"})
        assert ok.status == 200  # followed the redirect to the page
        [p] = await store.all_providers(db)
        assert (p.name, p.password, p.did_from, p.enabled, p.outgoing) == ("Манго", "b;c", "Diversion", True, False)
        page = await ok.text()
        assert "Манго" in page and "b;c" not in page  # a password is never shown back
        edited = await client.post("/settings/telephony", data={
            "csrf_token": token, "action": "provider_save", "provider": str(p.id), "name": "Манго",
            "server": "sip2.mango.ru", "login": "a", "password": "", "enabled": "1"})
        assert edited.status == 200
        [p2] = await store.all_providers(db)
        assert (p2.server, p2.password) == ("sip2.mango.ru", "b;c")  # an empty password keeps the stored one
        assert await store.revision(db) == start + 2


def test_clinic_numbers_are_stored_and_routed_in_one_form() -> None:
    for raw in ("+7 495 765-43-21", "8 (495) 765-43-21", "4957654321", "74957654321"):
        assert rules.normalize_did(raw) == "74957654321", raw
    assert rules.normalize_did("+375 29 123-45-67") == "375291234567"
    assert rules.normalize_did("12345") == "" and rules.normalize_did("abc") == ""
    with pytest.raises(rules.TelephonyError) as exc:
        rules.check_number({"did": "12-34"})
    assert exc.value.field == "did"
    with pytest.raises(rules.TelephonyError) as exc:
        rules.check_number({"did": "+74957654321", "queue": "reception-ringall]\n[evil"})
    assert exc.value.field == "queue"
    n = rules.check_number({"did": "8 495 765-43-21", "queue": "reception-linear"})
    dialplan = render_telephony([], [n, rules.ClinicNumber("7495;x", "reception-linear")])[DIALPLAN_FILE]
    assert "exten => 74957654321,1,Set(__CLINIC_DID=74957654321)" in dialplan
    assert "Set(__CLINIC_QUEUE=reception-linear)" in dialplan
    assert "7495;x" not in dialplan  # a stored row that is no number never reaches Asterisk


def test_nat_settings_reach_the_transports_as_plain_addresses_only() -> None:
    from pbx.asterisk.config import nat_lines

    assert nat_lines("203.0.113.5", "192.168.1.0/24, 10.0.0.0/8").splitlines() == [
        "external_media_address = 203.0.113.5", "external_signaling_address = 203.0.113.5",
        "local_net = 192.168.1.0/24", "local_net = 10.0.0.0/8"]
    assert nat_lines("", "").startswith(";")
    for bad in ("1.2.3.4\n[evil]", "a b", "x;y"):
        with pytest.raises(ValueError):
            nat_lines(bad, "")
        with pytest.raises(ValueError):
            nat_lines("", bad)


def test_outgoing_numbers_leave_as_the_provider_wants_them() -> None:
    def out(fmt: str) -> str:
        p = rules.check_provider({**GOOD, "dial_format": fmt}, 1)
        return render_telephony([p])[DIALPLAN_FILE].split("[clinic-numbers]")[0]

    assert "Set(CLINIC_OUT_NUMBER=8${CLINIC_OUT_NUMBER:1})" in out("8")
    assert "Set(CLINIC_OUT_NUMBER=+${CLINIC_OUT_NUMBER})" in out("+7")
    plain = out("7")
    assert "=8${" not in plain and "=+${" not in plain and "Set(CLINIC_OUT_NUMBER=7${CLINIC_OUT_NUMBER:1})" in plain
    with pytest.raises(rules.TelephonyError) as exc:
        rules.check_provider({**GOOD, "dial_format": "9"})
    assert exc.value.field == "dial_format"


def test_the_robots_number_is_formatted_as_the_dialplan_does() -> None:
    assert rules.dial_number("79031112233", "8") == "89031112233"
    assert rules.dial_number("89031112233", "+7") == "+79031112233"
    assert rules.dial_number("9031112233", "7") == "79031112233"
    assert rules.dial_number("375291234567", "8") == "375291234567"  # not Russian: digits as they are
    assert rules.dial_number("112", "8") == "112"

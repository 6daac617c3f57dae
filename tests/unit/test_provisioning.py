"""#29: a desk phone plugged in and pointed at the server takes its settings. Yealink's and
Grandstream's files carry the phone's account; the URL is the phone's own secret (shown once,
only its hash kept, a new password makes a new one); the password is sealed with the
installation's key; the file is served only to the clinic's networks, never to a request that
came through an untrusted proxy; every fetch is audited."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crm.rules import provisioning as prov
from crm.secret_box import SecretBox

ACCOUNT = prov.PhoneAccount("104", "Ресепшн 4", "Pw3xYz8kLmN2pQr5", "192.168.1.10", 5060)


def test_the_file_name_a_phone_asks_for_chooses_the_format() -> None:
    assert prov.family_of("805ec0123456.cfg") == prov.YEALINK
    assert prov.family_of("y000000000044.cfg") == prov.YEALINK
    assert prov.family_of("cfg000b82123456.xml") == prov.GRANDSTREAM
    assert prov.family_of("cfg000b82123456") == prov.GRANDSTREAM
    for other in ("boot.ini", "../secrets.json", "805ec0123456.boot", "cfg.xml", "y00000000004.cfg"):
        assert prov.family_of(other) is None


def test_yealink_gets_its_account() -> None:
    text = prov.yealink_config(ACCOUNT)
    assert text.startswith("#!version:1.0.0.1\n")
    for line in ("account.1.enable = 1", "account.1.user_name = 104", "account.1.auth_name = 104",
                 "account.1.password = Pw3xYz8kLmN2pQr5", "account.1.sip_server.1.address = 192.168.1.10",
                 "account.1.sip_server.1.port = 5060", "account.1.sip_server.1.transport_type = 0",
                 "account.1.display_name = Ресепшн 4", "features.pickup.direct_pickup_code = *8"):
        assert line + "\n" in text


def test_grandstream_gets_its_account_as_escaped_xml() -> None:
    import xml.etree.ElementTree as ET

    hostile = prov.PhoneAccount("105", 'A<b>&"c"\n</P34>', "Pw3xYz8kLmN2pQr5", "pbx.clinic.local", 5062, "tcp")
    root = ET.fromstring(prov.grandstream_config(hostile))
    values = {e.tag: e.text for e in root.iter() if e.tag.startswith("P")}
    assert values["P35"] == values["P36"] == "105" and values["P34"] == "Pw3xYz8kLmN2pQr5"
    assert values["P47"] == "pbx.clinic.local:5062" and values["P130"] == "1" and values["P271"] == "1"
    assert values["P3"] == 'A<b>&"c"</P34>'  # text, not markup: the label cannot add a field


def test_a_sealed_password_opens_only_with_its_key() -> None:
    sealed = SecretBox("key-one").seal("Pw3xYz8kLmN2pQr5")
    assert "Pw3xYz8kLmN2pQr5" not in sealed
    assert SecretBox("key-one").open(sealed) == "Pw3xYz8kLmN2pQr5"
    assert SecretBox("key-two").open(sealed) is None and SecretBox("key-one").open("junk") is None
    with pytest.raises(ValueError):
        SecretBox("")


async def test_the_phone_takes_its_file_from_the_clinics_network_only(tmp_path: Path) -> None:
    from tests.unit.panel_client import csrf, settings_admin_panel

    async with settings_admin_panel(tmp_path) as (db, client):
        added = await client.post("/settings/telephony", data={
            "csrf_token": await csrf(client, "/settings/telephony"), "action": "phone_save", "extension": "104",
            "label": "Ресепшн 4"})
        page = await added.text()
        password = re.search(r'class="password">([A-Za-z0-9]{16})<', page).group(1)
        path = re.search(r'class="provision">http://[^/<]+(/provision/[A-Za-z0-9_-]+/)<', page).group(1)
        row = await db.fetchone("SELECT sealed_password, provision_hash FROM desk_phones WHERE extension = '104'")
        assert password not in str(tuple(row)) and path.split("/")[2] not in str(tuple(row))

        got = await client.get(path + "805ec0123456.cfg")  # the test client is on loopback
        text = await got.text()
        assert got.status == 200 and f"account.1.password = {password}\n" in text
        assert got.headers["Cache-Control"] == "no-store"
        gs = await client.get(path + "cfg000b82123456.xml")
        assert gs.status == 200 and f"<P34>{password}</P34>" in await gs.text()
        assert (await client.get(path + "boot.ini")).status == 404
        assert (await client.get("/provision/" + "x" * 32 + "/805ec0123456.cfg")).status == 404
        # through a proxy the server does not trust: its origin is unknown
        proxied = await client.get(path + "805ec0123456.cfg", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status == 403
        audit = await db.fetchall("SELECT action, object_id FROM audit_log WHERE action = 'phone_provisioned'")
        assert [tuple(r) for r in audit] == [("phone_provisioned", "104")] * 2

        # a new password makes a new URL; the old one is gone
        reset = await client.post("/settings/telephony", data={
            "csrf_token": await csrf(client, "/settings/telephony"), "action": "phone_password", "extension": "104"})
        new_path = re.search(r'class="provision">http://[^/<]+(/provision/[A-Za-z0-9_-]+/)<', await reset.text()).group(1)
        assert new_path != path and (await client.get(path + "805ec0123456.cfg")).status == 404
        assert (await client.get(new_path + "805ec0123456.cfg")).status == 200
        listed = await (await client.get("/settings/telephony")).text()
        assert "настройки получены" in listed and new_path not in listed


def test_an_address_outside_the_clinics_networks_is_refused() -> None:
    from crm.login_limits import in_networks
    from web.provisioning import clinic_networks

    nets = clinic_networks("192.168.1.0/24, bogus")  # a bad network is skipped, not trusted
    assert in_networks("192.168.1.77", nets) and in_networks("127.0.0.1", nets)
    assert not in_networks("203.0.113.9", nets) and not in_networks("192.168.2.1", nets)


def test_an_encrypted_phone_gets_tls_and_srtp() -> None:
    from crm.rules import telephony as rules
    from pbx.asterisk.render import PJSIP_FILE, render_telephony

    phone = rules.check_phone({"extension": "106", "secure": "1"})
    assert phone.secure
    pjsip = render_telephony([], phones=[rules.DeskPhone("106", md5_cred="x" * 32, secure=True)])[PJSIP_FILE]
    assert "transport = transport-tls\nmedia_encryption = sdes\nmedia_encryption_optimistic = no\n" in pjsip
    plain = render_telephony([], phones=[rules.DeskPhone("107", md5_cred="x" * 32)])[PJSIP_FILE]
    assert "media_encryption" not in plain
    secure = prov.PhoneAccount("106", "", "Pw3xYz8kLmN2pQr5", "192.168.1.10", 5061, "tls", srtp=True)
    yealink = prov.yealink_config(secure)
    assert "account.1.sip_server.1.transport_type = 2\n" in yealink and "account.1.srtp_encryption = 2\n" in yealink
    assert "<P130>2</P130>" in prov.grandstream_config(secure) and "<P183>2</P183>" in prov.grandstream_config(secure)

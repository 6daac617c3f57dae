"""#29: desk phones set up in the panel. The password is made by the server, shown once, kept
only as the digest hash Asterisk checks; a reset makes the old one useless; the rendered phone
uses the shipped desk-phone templates and joins the chosen queues after the shipped members."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from crm import telephony as store
from crm.db import Database
from crm.rules import telephony as rules
from pbx.asterisk.render import PJSIP_FILE, QUEUES_FILE, render_telephony


@pytest.mark.parametrize(("ext", "why"), [("99", "три цифры"), ("1000", "три цифры"), ("204", "три цифры"),
                                          ("101", "демо"), ("1a4", "три цифры"), ("104\n[x]", "три цифры")])
def test_an_extension_colleagues_cannot_dial_is_refused(ext: str, why: str) -> None:
    with pytest.raises(rules.TelephonyError) as exc:
        rules.check_phone({"extension": ext})
    assert exc.value.field == "extension" and why in str(exc.value)


def test_a_label_cannot_break_the_callerid_line() -> None:
    p = rules.check_phone({"extension": "104", "label": 'Ресепшн "4" <evil>\n[x];#include', "queues": "reception-linear,bogus"})
    assert p.label == "Ресепшн 4 evil x include" and p.queues == ("reception-linear",)


def test_the_rendered_phone_has_only_the_digest_and_its_queues() -> None:
    p = rules.DeskPhone("104", "Ресепшн 4", ("reception-ringall",), rules.md5_cred("104", "secret-pw"))
    files = render_telephony([], phones=[p])
    pjsip, queues = files[PJSIP_FILE], files[QUEUES_FILE]
    assert "[104](desk-phone)" in pjsip and 'callerid = "Ресепшн 4" <104>' in pjsip
    assert "auth_type = md5" in pjsip and f"md5_cred = {hashlib.md5(b'104:asterisk:secret-pw').hexdigest()}" in pjsip
    assert "secret-pw" not in pjsip
    assert "[reception-ringall](+)\nmember => PJSIP/104,0,104,PJSIP/104" in queues
    assert "reception-linear" not in queues
    assert render_telephony([], phones=[rules.DeskPhone("105")])[PJSIP_FILE].count("[105]") == 0  # no account yet


async def test_a_password_is_shown_once_and_a_reset_replaces_it(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        start = await store.revision(db)
        password = await store.save_phone(db, rules.check_phone({"extension": "104", "label": "Ресепшн 4"}), 1.0)
        assert re.fullmatch(r"[A-Za-z0-9]{16}", password)
        [phone] = await store.desk_phones(db)
        assert phone.md5_cred == rules.md5_cred("104", password)
        rows = await db.fetchall("SELECT * FROM desk_phones WHERE extension = '104'")
        assert password not in str([tuple(r) for r in rows])  # only the hash is kept
        assert await store.save_phone(db, rules.check_phone({"extension": "104", "label": "Ресепшн IV"}), 2.0) == ""
        again = await store.reset_phone_password(db, "104", 3.0)
        [phone] = await store.desk_phones(db)
        assert again != password and phone.md5_cred == rules.md5_cred("104", again) and phone.label == "Ресепшн IV"
        with pytest.raises(rules.TelephonyError):
            await store.reset_phone_password(db, "101", 4.0)  # a demo phone's password lives in asterisk-config
        await store.delete_phone(db, "104", 5.0)
        assert await store.desk_phones(db) == [] and await store.revision(db) == start + 4
        actions = [r[0] for r in await db.fetchall("SELECT action FROM audit_log ORDER BY id")]
        assert actions == ["phone_save", "phone_save", "phone_password", "phone_delete"]
    finally:
        await db.close()


async def test_the_panel_shows_the_new_password_once(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from crm import users
    from pbx.app import SERVICES, Adapters, build_app
    from tests.unit.panel_client import csrf, log_in, offline_settings

    app = build_app(offline_settings(tmp_path), run_escort=False, adapters=Adapters.offline())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        db = app[SERVICES].db
        await users.create_user(db, "boss", "pw-boss-123", role="settings_admin")
        await log_in(client, "boss", "pw-boss-123")
        token = await csrf(client, "/settings/telephony")
        added = await client.post("/settings/telephony", data={
            "csrf_token": token, "action": "phone_save", "extension": "104", "label": "Ресепшн 4",
            "queues": "reception-ringall"})
        page = await added.text()
        shown = re.search(r'class="password">([A-Za-z0-9]{16})<', page)
        assert added.status == 200 and shown and 'data-phone="104"' in page
        [phone] = await store.desk_phones(db)
        assert phone.md5_cred == rules.md5_cred("104", shown.group(1)) and phone.queues == ("reception-ringall",)
        later = await (await client.get("/settings/telephony")).text()
        assert shown.group(1) not in later and 'data-phone="104"' in later
        shift = await (await client.get("/shift")).text()
        assert "104" in shift  # an administrator can take the new phone for the shift

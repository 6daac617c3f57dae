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


@pytest.mark.parametrize(("ext", "why"), [("99", "100–199"), ("10000", "100–199"), ("204", "100–199"),
                                          ("2000", "100–199"), ("101", "демо"), ("1a4", "100–199"),
                                          ("104\n[x]", "100–199")])
def test_an_extension_colleagues_cannot_dial_is_refused(ext: str, why: str) -> None:
    with pytest.raises(rules.TelephonyError) as exc:
        rules.check_phone({"extension": ext})
    assert exc.value.field == "extension" and why in str(exc.value)


def test_four_digit_extensions_for_a_large_clinic() -> None:
    assert rules.check_phone({"extension": "1042"}).extension == "1042"


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
        secret = await store.save_phone(db, rules.check_phone({"extension": "104", "label": "Ресепшн 4"}), 1.0)
        assert secret is not None and secret.token == ""  # no key given: no provisioning
        password = secret.password
        assert re.fullmatch(r"[A-Za-z0-9]{16}", password)
        [phone] = await store.desk_phones(db)
        assert phone.md5_cred == rules.md5_cred("104", password)
        rows = await db.fetchall("SELECT * FROM desk_phones WHERE extension = '104'")
        assert password not in str([tuple(r) for r in rows])  # only the hash is kept
        assert await store.save_phone(db, rules.check_phone({"extension": "104", "label": "Ресепшн IV"}), 2.0) is None
        again = (await store.reset_phone_password(db, "104", 3.0)).password
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
    from tests.unit.panel_client import csrf, settings_admin_panel

    async with settings_admin_panel(tmp_path) as (db, client):
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


def test_panel_queues_ring_their_phones_and_send_a_long_wait_on() -> None:
    from crm.rules.queues import ClinicQueue, check_queue, queue_choices
    from pbx.asterisk.render import DIALPLAN_FILE, Context

    night = ClinicQueue(2, "Ночная", "linear", 20, 60, "callback")
    day = check_queue({"title": "Дневная", "strategy": "rrmemory", "ring_seconds": "25", "max_wait": "90",
                       "on_timeout": night.name}, 1, queue_choices([night]))
    linear = ClinicQueue(3, "В регистратуру", on_timeout="reception-linear")
    phone = rules.DeskPhone("104", "", (day.name, "reception-ringall"), "x" * 32)
    number = rules.check_number({"did": "74951234567", "queue": day.name}, queue_choices([day, night]))
    files = render_telephony([], [number], Context(queues=(day, night, linear)), [phone])
    queues, dialplan = files[QUEUES_FILE], files[DIALPLAN_FILE]
    assert "[queue-1](queue-common)\nstrategy = rrmemory\ntimeout = 25\nmember => PJSIP/104,0,104,PJSIP/104" in queues
    assert "[queue-2](queue-common)\nstrategy = linear\ntimeout = 20\n\n" in queues  # nobody rings in it yet
    assert "[reception-ringall](+)\nmember => PJSIP/104" in queues
    assert "Set(__CLINIC_QUEUE=queue-1)\n same => n,Set(__CLINIC_QUEUE_WAIT=90)" in dialplan
    assert "exten => queue-1,1,Set(__CLINIC_QUEUE=queue-2)\n same => n,Queue(queue-2,r,,,60)" in dialplan
    assert "exten => queue-2,1,AGI(${AGI_URL}/after_hours,${CLINIC_DID})" in dialplan
    assert "exten => queue-3,1,Set(__CLINIC_QUEUE=reception-linear)\n same => n,Queue(reception-linear,r,,,${QUEUE_MAX_WAIT})" in dialplan
    with pytest.raises(rules.TelephonyError) as exc:
        check_queue({"title": "x", "on_timeout": "queue-1"}, 1, queue_choices([day]))  # into itself
    assert exc.value.field == "on_timeout"
    with pytest.raises(rules.TelephonyError) as exc:
        check_queue({"title": "x", "strategy": "wrandom]\n[x"}, 0, {})
    assert exc.value.field == "strategy"


async def test_a_queue_in_use_is_not_deleted(tmp_path: Path) -> None:
    from crm.rules.queues import ClinicQueue

    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        first = await store.save_queue(db, ClinicQueue(0, "Дневная"), 1.0)
        second = await store.save_queue(db, ClinicQueue(0, "Ночная", on_timeout=f"queue-{first}"), 2.0)
        with pytest.raises(rules.TelephonyError):
            await store.save_queue(db, ClinicQueue(0, "Дневная"), 3.0)  # the same title twice
        await store.save_number(db, rules.ClinicNumber("74951234567", f"queue-{first}"), 4.0)
        with pytest.raises(rules.TelephonyError, match="74951234567"):
            await store.delete_queue(db, first, 5.0)
        await store.save_number(db, rules.ClinicNumber("74951234567", "reception-ringall"), 6.0)
        with pytest.raises(rules.TelephonyError, match="Ночная"):
            await store.delete_queue(db, first, 7.0)
        await store.delete_queue(db, second, 8.0)
        await store.delete_queue(db, first, 9.0)
        assert await store.clinic_queues(db) == []
    finally:
        await db.close()

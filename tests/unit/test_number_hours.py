"""#29: a clinic number's working hours and what a call outside them gets. The same parse
answers the panel's «сейчас открыто/закрыто» and writes Asterisk's GotoIfTime steps; a caller
outside the hours becomes a callback request joined with their open one."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm import callbacks
from crm import telephony as store
from crm.db import Database
from crm.rules import hours
from crm.rules.telephony import TelephonyError, check_number
from pbx.asterisk.render import DIALPLAN_FILE, Context, render_telephony

TZ = ZoneInfo("Europe/Moscow")
WEEK = "пн-пт 09:00-20:00; сб 10:00-15:00"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=TZ)  # 7 Dec 2026 is a Monday


def test_open_within_the_hours_closed_outside_and_on_holidays() -> None:
    spans = hours.parse_hours(WEEK)
    days = hours.parse_holidays("08.12.2026 2026-12-31")
    assert hours.is_open(spans, days, at(7, 9)) and hours.is_open(spans, days, at(7, 19, 59))
    assert not hours.is_open(spans, days, at(7, 20)) and not hours.is_open(spans, days, at(7, 8, 59))
    assert not hours.is_open(spans, days, at(8, 12))  # a holiday
    assert hours.is_open(spans, days, at(12, 14, 59)) and not hours.is_open(spans, days, at(12, 15))  # Saturday
    assert not hours.is_open(spans, days, at(13, 12))  # Sunday
    assert hours.is_open((), (), at(13, 3))  # no hours: always open


@pytest.mark.parametrize("text", ["пн-пт 9-20", "пт-пн 09:00-20:00", "пн 20:00-09:00", "пн 25:00-26:00",
                                  "mon 09:00-18:00", "пн 09:00-18:00]\n[evil"])
def test_hours_typed_wrong_are_refused_with_the_field(text: str) -> None:
    with pytest.raises(TelephonyError) as exc:
        check_number({"did": "74951234567", "hours": text})
    assert exc.value.field == "hours" and str(exc.value).startswith("Часы работы: «")


def test_holidays_and_the_mobile_are_checked() -> None:
    with pytest.raises(TelephonyError) as exc:
        check_number({"did": "74951234567", "hours": WEEK, "holidays": "32.12.2026"})
    assert exc.value.field == "holidays"
    with pytest.raises(TelephonyError) as exc:
        check_number({"did": "74951234567", "hours": WEEK, "closed_mobile": "03"})
    assert exc.value.field == "closed_mobile"
    n = check_number({"did": "74951234567", "hours": WEEK, "closed_mobile": "8 903 111-22-33"})
    assert n.closed_mobile == "79031112233"


def test_asterisk_gets_the_same_hours_and_only_the_coming_years_holidays() -> None:
    n = check_number({"did": "74951234567", "hours": WEEK, "holidays": "01.12.2026, 31.12.2026",
                      "closed_message": "Клиника закрыта", "closed_callback": "1"})
    text = render_telephony([], [n], Context(tz="Asia/Yekaterinburg", today=date(2026, 12, 7),
                                             sounds={"Клиника закрыта": "/snd/abc"}))[DIALPLAN_FILE]
    assert "GotoIfTime(09:00-19:59,mon-fri,*,*,Asia/Yekaterinburg?open)" in text
    assert "GotoIfTime(10:00-14:59,sat,*,*,Asia/Yekaterinburg?open)" in text
    assert "GotoIfTime(*,*,31,dec,Asia/Yekaterinburg?closed)" in text
    assert ",1,dec," not in text  # 1 Dec 2026 is past: it would close 1 Dec 2027
    assert "Set(CLINIC_CLOSED_SOUND=/snd/abc)" in text and "Set(CLINIC_CLOSED_CALLBACK=1)" in text
    assert "Клиника закрыта" not in text  # the words reach Asterisk as a sound file only
    lines = text.splitlines()
    closed = lines.index(" same => n(closed),Set(CLINIC_CLOSED_SOUND=/snd/abc)")
    assert lines[closed - 1] == " same => n(open),Goto(clinic-incoming,s,1)"
    assert lines[closed - 2] == " same => n,Goto(closed)"  # outside every span


async def test_a_caller_outside_the_hours_becomes_one_callback_request(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        await store.save_number(db, check_number({"did": "74951234567", "hours": WEEK}), 1.0)
        first = await callbacks.after_hours_request(db, "+79161234567", "74951234567", 100.0)
        again = await callbacks.after_hours_request(db, "+79161234567", "74951234567", 400.0)
        assert first.created and again.joined and again.request_id == first.request_id  # the robot calls once
        row = await db.fetchone("SELECT source_name, comment, state FROM callback_requests WHERE id = ?", (first.request_id,))
        assert row["source_name"] == callbacks.AFTER_HOURS_SOURCE and "74951234567" in row["comment"]
        assert row["state"] == "open"
    finally:
        await db.close()


async def test_the_panel_saves_a_number_with_its_hours_and_names_a_wrong_field(tmp_path: Path) -> None:
    from tests.unit.panel_client import csrf, settings_admin_panel

    async with settings_admin_panel(tmp_path) as (db, client):
        token = await csrf(client, "/settings/telephony")
        bad = await client.post("/settings/telephony", data={
            "csrf_token": token, "action": "number_save", "did": "+7 495 765-43-21", "hours": "пн-пт с 9 до 20"})
        text = await bad.text()
        assert bad.status == 400 and "Часы работы" in text and 'name="hours" value="пн-пт с 9 до 20"' in text
        ok = await client.post("/settings/telephony", data={
            "csrf_token": token, "action": "number_save", "did": "+7 495 765-43-21", "queue": "reception-linear",
            "hours": "пн-вс 00:00-24:00", "closed_message": "Закрыто", "closed_callback": "1"})
        page = await ok.text()
        assert ok.status == 200 and 'data-did="74957654321"' in page and 'data-open="1"' in page
        [n] = await store.numbers(db)
        assert (n.did, n.queue, n.hours, n.closed_callback) == ("74957654321", "reception-linear", "пн-вс 00:00-24:00", True)
        rows = await db.fetchall("SELECT action, object_id FROM audit_log WHERE action LIKE 'number%'")
        assert [tuple(r) for r in rows] == [("number_save", "74957654321")]

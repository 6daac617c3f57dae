"""The home page: missed calls still to return (24 hours, one row per number, gone once the
number had a conversation), today's figures, today's tasks; nothing of the calls for a user
without the history right."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import callbacks, calls, directory, schedule, tasks, users
from crm.clock import SettableClock
from crm.demo import load_demo
from crm.rules.call_records import CallRecord, LegRecord
from pbx.app import SERVICES, build_app
from tests.unit.panel_client import log_in, offline_settings
from web import home

TZ = ZoneInfo("Europe/Moscow")


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ).timestamp()


def missed(lid: str, t0: float, caller: str) -> CallRecord:
    leg = LegRecord("101", lid + ".1", "no_answer", t0, None, t0 + 20, True)
    return CallRecord(lid, "incoming", "missed", "74951110001", caller, "74951110001", "reception",
                      (leg,), "", t0, None, t0 + 20, 20.0, 0.0, "caller", "")


def called_back(lid: str, t0: float, callee: str) -> CallRecord:
    return CallRecord(lid, "outgoing", "outgoing", "", "101", callee, "", (), "101", t0, t0 + 5,
                      t0 + 65, 5.0, 60.0, "caller", "")


@pytest.fixture
async def app(tmp_path: Path, storage_setting: dict):
    clock = SettableClock(at(23, 12))
    application = build_app(offline_settings(tmp_path, **storage_setting), clock=clock)
    async with TestClient(TestServer(application, host="127.0.0.1")) as client:
        db = application[SERVICES].db
        await load_demo(db, now=at(1, 9), robot_patients=False)
        await users.create_user(db, "anna", "pw", history_access="read")
        blind = await users.create_user(db, "blind", "pw")
        async with db.transaction() as tx:
            await tx.execute("UPDATE users SET history_access = 'none' WHERE id = ?", (blind,))
        for record in (
            missed("1.0", at(23, 9), "79161234567"),  # Петрова, twice this morning
            missed("2.0", at(23, 10), "79161234567"),
            missed("3.0", at(23, 8), "79035550000"),  # called back at 11:00: done
            called_back("4.0", at(23, 11), "79035550000"),
            missed("5.0", at(22, 11), "79990001122"),  # 25 hours ago: too late for this list
        ):
            await calls.save_call(db, record)
        await tasks.add_task(db, 1, "Напомнить о гигиене", date(2026, 11, 23), None)
        await tasks.add_task(db, 1, "Через неделю", date(2026, 11, 30), None)
        yield client


async def test_missed_calls_to_return_and_today(app) -> None:
    await log_in(app, "anna", "pw")
    page = await (await app.get("/")).text()
    call_back = page[page.index("Перезвонить"):page.index("Звонки сегодня")]
    assert call_back.count('<tr class="missed">') == 1  # one row for Петрова's two calls
    assert "Петрова Анна Сергеевна" in call_back and "(×2)" in call_back
    assert "24.11.2026 09:00" in call_back  # the first call's deadline, the clinic's time
    assert "79035550000" not in call_back and "79990001122" not in call_back
    assert "Звонки сегодня: <strong>4</strong>" in page  # three missed + one outgoing
    assert "Напомнить о гигиене" in page and "Через неделю" not in page


async def test_no_calls_without_the_history_right(app) -> None:
    await log_in(app, "blind", "pw")
    page = await (await app.get("/")).text()
    assert 'class="home call-back"' not in page and "Звонки сегодня" not in page
    assert "Приёмы сегодня" in page and "Состояние телефонии" in page


def test_to_call_back_one_row_per_number_the_most_urgent_first() -> None:
    pending = [(1, "+79160000001", "2026-11-23T07:00:00+00:00"), (2, "+79160000002", "2026-11-23T06:00:00+00:00"),
               (3, "+79160000001", "2026-11-23T05:00:00+00:00"), (4, "", "2026-11-23T04:00:00+00:00")]
    rows, total = home.to_call_back(pending, shown=1)
    assert total == 2  # two numbers; the hidden one cannot be called back
    assert rows == [(1, "2026-11-23T05:00:00+00:00", 2)]  # its latest call, its first call's start, twice


async def test_a_busy_day_shows_the_most_urgent_numbers_and_links_to_all(app) -> None:
    """#31: at a chain's scale hundreds of numbers wait; the home page shows the most urgent
    (and stays fast), says how many there are and links to the history's list of them."""
    db = app.server.app[SERVICES].db
    for i in range(home.HOME_ROWS + 2):
        await calls.save_call(db, missed(f"9{i}.0", at(23, 6) + i * 60, f"7926000{i:04d}"))
    await log_in(app, "anna", "pw")
    page = await (await app.get("/")).text()
    call_back = page[page.index("Перезвонить"):page.index("Звонки сегодня")]
    assert call_back.count('<tr class="missed">') == home.HOME_ROWS
    assert f"Перезвонить ({home.HOME_ROWS + 3})" in call_back  # and Петрова
    assert "+7 926 000-00-00" in call_back and "Петрова" not in call_back  # 06:00 first; Петрова's 09:00 is later
    assert "type=missed_unprocessed" in call_back


async def test_todays_appointments_counted_by_status(app) -> None:
    db = app.server.app[SERVICES].db
    day = date(2026, 11, 25)
    for hour in (9, 10, 11):
        booked = await schedule.book(db, patient_id=1, doctor_id=1, minutes=30, now=at(23, 12),
                                     starts_at=datetime(2026, 11, 25, hour, tzinfo=TZ))
    await schedule.set_status(db, booked, "cancelled")
    listed = await schedule.day_appointments(db, day, TZ)
    assert len({a["status"] for a in listed}) > 1
    counts = await schedule.day_status_counts(db, day, TZ)
    assert sum(counts.values()) == len(listed)
    assert counts == {label: sum(1 for a in listed if a["status_label"] == label) for label in counts}


async def test_no_address_for_the_robot_s_letters_is_warned_of(app) -> None:
    """#32, seed 003: the letters go to «почту ответственных сотрудников клиники»; the list is
    empty by default, so nothing would ever be written: the home page and the robot's page say so."""
    await log_in(app, "anna", "pw")
    assert "не указана почта ответственных сотрудников" in await (await app.get("/")).text()
    assert "Не указана почта ответственных сотрудников" in await (await app.get("/callbacks")).text()
    db = app.server.app[SERVICES].db
    await callbacks.save_settings(db, dataclasses.replace(await callbacks.settings(db), emails="reg@clinic.example"))
    assert "не указана почта" not in await (await app.get("/")).text()
    assert "Не указана почта" not in await (await app.get("/callbacks")).text()


async def test_a_caller_through_a_number_that_hides_callers_is_not_listed(app) -> None:
    """Seed 000: such a caller's number is shown nowhere, so it cannot be called back from here."""
    db = app.server.app[SERVICES].db
    await directory.hide_caller(db, "74951110002", True)
    hidden = missed("h.0", at(23, 7), "79035557777")
    await calls.save_call(db, dataclasses.replace(hidden, did="74951110002", callee="74951110002"))
    await log_in(app, "anna", "pw")
    page = await (await app.get("/")).text()
    call_back = page[page.index("Перезвонить"):page.index("Звонки сегодня")]
    assert "555-77-77" not in call_back and "79035557777" not in call_back
    assert call_back.count('<tr class="missed">') == 1 and "Перезвонить (1)" in call_back  # Петрова only

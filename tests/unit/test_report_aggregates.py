"""The reports read daily aggregates (crm.call_stats); they must give exactly what the row-by-row
computation over the same calls gives (tests/unit/report_reference.py), for random periods and
filters, whatever order the calls were stored in, and after writes that change days already
aggregated (a booking near an old call, a phone added to a card, tags, a caller typed by hand,
a record deleted, the clinic's time zone changed)."""

from __future__ import annotations

import dataclasses
import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm import (
    beside,
    call_stats,
    calls,
    clinic_settings,
    contacts,
    patients,
    reports,
    schedule,
    shifts,
    tags,
    users,
)
from crm.call_listing import CallFilter
from crm.clock import SettableClock
from crm.db import Database
from crm.demo import load_demo
from crm.rules import call_stats as rules
from crm.rules import windows
from crm.rules.call_records import CallRecord, LegRecord
from crm.storage import database
from tests.unit import report_reference as reference

TZ = ZoneInfo("Europe/Moscow")
T0 = datetime(2026, 11, 10, 0, 0, tzinfo=TZ).timestamp()
DAYS = 8
DIDS = ("74951110001", "74951110002")
EXTS = ("101", "102", "103")
NUMBERS = [f"7916555{i:04d}" for i in range(14)]
EMPLOYEE = "79057778899"


def record(rnd: random.Random, i: int) -> CallRecord:
    lid = f"{1000 + i}.0"
    t0 = T0 + rnd.randrange(DAYS * 86400 // 60) * 60 + rnd.choice((0, 0.25, 0.5))
    number = rnd.choice([*NUMBERS, EMPLOYEE])
    talk = float(rnd.randrange(0, 300, 5))
    if rnd.random() < 0.3:
        ext = rnd.choice(EXTS)
        answered = rnd.random() < 0.6
        return CallRecord(lid, "outgoing", "outgoing" if answered else "outgoing_unanswered", "", ext, number, "",
                          (), ext, t0, t0 + 5 if answered else None, t0 + 5 + (talk if answered else 20),
                          5.0, talk if answered else 0.0, "caller", "")
    rung = rnd.sample(EXTS, rnd.randint(1, 3))
    answered_by = rnd.choice([*rung, None, None])
    legs = tuple(
        LegRecord(ext, f"{lid}.{ext}", "answered" if ext == answered_by else "no_answer", t0,
                  t0 + 3 if ext == answered_by else None, t0 + 20, answered_by is None and rnd.random() < 0.8)
        for ext in rung)
    return CallRecord(lid, "incoming", "incoming" if answered_by else "missed", rnd.choice(DIDS), number,
                      DIDS[0], "reception", legs, answered_by or "", t0, t0 + 3 if answered_by else None,
                      t0 + 3 + (talk if answered_by else 17), 3.0, talk if answered_by else 0.0, "caller", "")


def call_filter(rnd: random.Random, ids: list[int], labels: list[str], tz: ZoneInfo = TZ) -> CallFilter:
    first = rnd.randrange(-1, DAYS)
    last = rnd.randrange(first, DAYS + 1)
    day0 = datetime.fromtimestamp(T0, TZ).date()
    since = datetime.combine(day0 + timedelta(days=first), datetime.min.time(), tz)
    until = datetime.combine(day0 + timedelta(days=last + 1), datetime.min.time(), tz)
    return CallFilter(since=since.astimezone(UTC).isoformat(timespec="milliseconds"),
                      until=until.astimezone(UTC).isoformat(timespec="milliseconds"),
                      did=rnd.choice(["", "", *DIDS]), user_id=rnd.choice([None, None, *ids]),
                      tag=rnd.choice(["", "", "", *labels]))


async def assert_same(db: Database, f: CallFilter, now: float, tz: ZoneInfo = TZ) -> None:
    assert await reports.admin_efficiency(db, f, tz) == await reference.admin_efficiency(db, f), f
    assert await reports.calls_per_day(db, f, tz) == await reference.calls_per_day(db, f, tz), f
    (total, days), (ref_total, ref_days) = (await reports.missed_processing(db, f, tz, now),
                                             await reference.missed_processing(db, f, tz, now))
    for (day, mine), (ref_day, theirs) in zip([(None, total), *days], [(None, ref_total), *ref_days], strict=True):
        assert day == ref_day
        assert (mine.missed, mine.called_back, mine.got_through, mine.pending, mine.unprocessed) == (
            theirs.missed, theirs.called_back, theirs.got_through, theirs.pending, theirs.unprocessed), f
        assert sorted(mine.minutes_to_process) == sorted(theirs.minutes_to_process)
    for group in (None, *await group_ids(db)):
        assert await reports.tag_counts(db, f, tz, group) == await reference.tag_counts(db, f, group), (f, group)


async def group_ids(db: Database) -> list[int]:
    return [r[0] for r in await db.fetchall("SELECT id FROM tag_groups")]


@pytest.fixture
async def clinic(db_location: Path | str):
    db = database(db_location, SettableClock(T0))
    await db.open()
    await load_demo(db, now=T0 - 86400 * 30, robot_patients=False)
    ids = [await users.create_user(db, f"u{e}", "pw", full_name=f"Админ {e}") for e in EXTS]
    for uid, ext in zip(ids, EXTS, strict=True):
        await shifts.bind(db, uid, ext, datetime.fromtimestamp(T0 - 86400, UTC).isoformat())
    pids = [await patients.add_patient(db, "Пациент", f"№{n}", phone_numbers=(f"+{n}",)) for n in NUMBERS[:6]]
    await contacts.add(db, "employee", "Сотрудница", EMPLOYEE)
    yield db, ids, pids
    await db.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_reports_from_aggregates_equal_the_row_by_row_ones(clinic, seed: int) -> None:
    db, ids, pids = clinic
    rnd = random.Random(seed)
    records = [record(rnd, i) for i in range(160)]
    rnd.shuffle(records)  # stored in any order (a backfill comes late and out of order)
    group = await tags.create_group(db, "Почему")
    tag_ids = [await tags.add_tag(db, group, name) for name in ("Дорого", "Нет окон")]
    labels = ["Дорого", "Нет окон", "Спросил про МРТ"]
    slots = itertools.count()  # one free hour of the doctor's for each booking
    now = T0 + (DAYS - 1) * 86400 + 36000  # some missed calls are still within their day

    async def mutate(batch: list[CallRecord]) -> None:
        for r in batch:
            await calls.save_call(db, r)
        for r in rnd.sample(batch, len(batch) // 4):  # bookings near calls: inside and outside the window
            edge = rnd.choice((-31, -29, 0, 29, 31, 120)) * 60
            when = (r.started_at if edge <= 0 else r.ended_at) + edge
            await schedule.book(db, patient_id=rnd.choice(pids), doctor_id=1,
                                starts_at=datetime.fromtimestamp(T0 + 40 * 86400 + next(slots) * 3600, TZ),
                                minutes=30, now=when,
                                call_linkedid=r.linkedid if rnd.random() < 0.3 else None)
        for r in rnd.sample(batch, len(batch) // 5):
            chosen = rnd.sample(tag_ids, rnd.randint(0, 2))
            await tags.set_tags(db, r.linkedid, chosen, "" if chosen and rnd.random() < 0.7 else labels[2], ids[0])
        for r in rnd.sample(batch, len(batch) // 10):
            if (await db.fetchone("SELECT 1 FROM tag_prompts WHERE linkedid = ?", (r.linkedid,))) is None:
                await tags.mark_prompted(db, r.linkedid, ids[1])

    await clinic_settings.put(db, windows.CONVERSION_NEARBY, True)  # the wider conversion: more reaches a day
    await mutate(records[:100])
    for _ in range(10):
        await assert_same(db, call_filter(rnd, ids, labels), now)
    # writes into days already aggregated
    await mutate(records[100:])
    async with db.transaction() as tx:  # a patient's new phone: their bookings now convert its old calls
        await tx.execute("INSERT INTO patient_phones (patient_id, e164) VALUES (?, ?)", (pids[0], f"+{NUMBERS[9]}"))
        await contacts.typed_by_hand(tx, records[3].linkedid, "employee")  # leaves the statistics
    await schedule.book(db, patient_id=pids[0], doctor_id=1, starts_at=datetime.fromtimestamp(T0 + 60 * 86400, TZ),
                        minutes=30, now=records[5].started_at + 60)
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM call_legs WHERE call_id IN (SELECT id FROM calls WHERE linkedid = ?)", (records[7].linkedid,))
    for _ in range(20):
        await assert_same(db, call_filter(rnd, ids, labels), now)
    await assert_same(db, call_filter(rnd, ids, labels), now + 3 * 86400)  # pending calls age
    # the clinic moves to another zone: its days are cut again
    other = ZoneInfo("Asia/Yekaterinburg")
    for _ in range(5):
        await assert_same(db, call_filter(rnd, ids, labels, other), now, other)
    # the clinic goes back to seed 000's conversion: every stored day is computed again
    before = await reports.admin_efficiency(db, _whole_period(), other)
    await clinic_settings.put(db, windows.CONVERSION_NEARBY, False)
    after = await reports.admin_efficiency(db, _whole_period(), other)
    assert sum(r.booked for r in after) < sum(r.booked for r in before)
    for _ in range(5):
        await assert_same(db, call_filter(rnd, ids, labels, other), now, other)


async def test_a_refresh_recomputes_only_what_a_write_touched(clinic) -> None:
    db, ids, _ = clinic
    rnd = random.Random(7)
    for i in range(30):
        await calls.save_call(db, record(rnd, i))
    assert await call_stats.refresh(db, TZ) >= 1
    assert await call_stats.refresh(db, TZ) == 0  # nothing written since
    late = record(rnd, 99)
    await calls.save_call(db, late)
    # its own day, and for an answered call the days back to the first missed call of its number
    # in the day before it (migration 0043: not the whole day before)
    first_missed = (await db.fetchone(
        "SELECT MIN(m.started_ts) FROM calls m JOIN calls n ON n.linkedid = ? AND m.phone_e164 = n.phone_e164"
        " WHERE m.call_type = 'missed' AND m.started_ts >= n.started_ts - 86400 AND m.started_ts < n.started_ts",
        (late.linkedid,)))[0] if late.answered_at else None
    touched = {d.isoformat() for d in rules.days_touched(first_missed or late.started_at, late.started_at, TZ)}
    assert await call_stats.refresh(db, TZ) == len(touched)
    # an answered call at 01:00 of a number that missed no call in the day before: its own day
    # only; after a missed call of its number at 23:00 the day before: both days
    night = datetime.combine(datetime.fromtimestamp(T0, TZ).date() + timedelta(days=DAYS), datetime.min.time(),
                             TZ).timestamp() + 3600
    talked = CallRecord("n.1", "incoming", "incoming", DIDS[0], "79990007777", DIDS[0], "reception", (), "101",
                        night, night + 3, night + 60, 3.0, 57.0, "caller", "")
    await calls.save_call(db, talked)
    assert await call_stats.refresh(db, TZ) == 1
    await calls.save_call(db, dataclasses.replace(talked, linkedid="n.2", started_at=night - 7200, answered_at=None,
                                                  ended_at=night - 7180, call_type="missed"))
    assert await call_stats.refresh(db, TZ) == 1  # the missed call's own day
    await calls.save_call(db, dataclasses.replace(talked, linkedid="n.3", started_at=night + 600,
                                                  answered_at=night + 603, ended_at=night + 660))
    assert await call_stats.refresh(db, TZ) == 2
    # a recording compressed, a status changed: not a report's business, no day recomputed
    async with db.transaction() as tx:
        await tx.execute("UPDATE calls SET recording = 'x.mp3' WHERE linkedid = ?", (late.linkedid,))
    assert await call_stats.refresh(db, TZ) == 0


async def test_days_computed_in_the_passes_own_process_equal_the_row_by_row_ones(clinic) -> None:
    """The background pass computes in a child process (crm.beside); the writer swaps its rows in."""
    db, ids, _ = clinic
    rnd = random.Random(11)
    for i in range(80):
        await calls.save_call(db, record(rnd, i))
    async with beside.apart(db) as computer:
        assert isinstance(computer, beside.Beside) == isinstance(db, Database)  # a chain computes in place
        assert await call_stats.refresh(db, TZ, computer) >= DAYS
    assert await call_stats.refresh(db, TZ) == 0  # the child's days are stored: nothing left to do
    for _ in range(4):
        await assert_same(db, call_filter(rnd, ids, []), T0 + (DAYS - 1) * 86400 + 36000)


def test_the_triggers_mark_at_least_the_rules_windows() -> None:
    """Migration 0021's triggers mark calls by literal spans: they must cover the windows."""
    text = (Path(__file__).parents[2] / "crm" / "migrations" / "0021_report_days.sql").read_text()
    assert "86400" in text and windows.MISSED_CALL_PROCESSING == 86400
    assert "7200" in text and windows.APPOINTMENT_LINK <= 7200


def _whole_period() -> CallFilter:
    day0 = datetime.fromtimestamp(T0, TZ).date()
    return CallFilter(since=datetime.combine(day0, datetime.min.time(), TZ).astimezone(UTC).isoformat(),
                      until=datetime.combine(day0 + timedelta(days=DAYS), datetime.min.time(), TZ)
                      .astimezone(UTC).isoformat())


async def _figures(db: Database, f: CallFilter, now: float) -> tuple[object, ...]:
    total, _ = await reference.missed_processing(db, f, TZ, now)
    return (await reference.admin_efficiency(db, f), await reference.calls_per_day(db, f, TZ),
            (total.missed, total.called_back, total.pending, total.unprocessed),
            await reference.tag_counts(db, f))


LATE_WRITES = ("call_back_next_day", "phone_added", "booked_later", "typed_by_hand", "tagged", "dismissed",
               "deleted", "appointment_moved_to_another_patient")


@pytest.mark.parametrize("late", LATE_WRITES)
async def test_each_kind_of_late_write_reaches_the_aggregated_day(clinic, late: str) -> None:
    """One write of each kind into a day already aggregated: the reference's figures change
    (the case is real) and the aggregates follow. With the clinic's wider conversion, whose
    bookings near a call reach it by time (the triggers' widest span)."""
    db, ids, pids = clinic
    await clinic_settings.put(db, windows.CONVERSION_NEARBY, True)
    day1 = T0 + 86400 + 23 * 3600  # 23:00 on the second day
    missed = CallRecord("m.1", "incoming", "missed", DIDS[0], NUMBERS[8], DIDS[0], "reception",
                        (LegRecord("101", "m.1.101", "no_answer", day1, None, day1 + 20, True),), "", day1, None,
                        day1 + 20, 20.0, 0.0, "caller", "")
    answered = CallRecord("a.1", "incoming", "incoming", DIDS[0], NUMBERS[0], DIDS[0], "reception",
                          (LegRecord("102", "a.1.102", "answered", day1 - 3600, day1 - 3597, day1 - 3500, False),), "102",
                          day1 - 3600, day1 - 3597, day1 - 3500, 3.0, 97.0, "caller", "")
    await calls.save_call(db, missed)
    await calls.save_call(db, answered)
    booked = await schedule.book(db, patient_id=pids[1], doctor_id=1, minutes=30, now=day1 - 3000,
                                 starts_at=datetime.fromtimestamp(T0 + 30 * 86400, TZ))
    f, now = _whole_period(), T0 + DAYS * 86400
    await assert_same(db, f, now)  # aggregated
    before = await _figures(db, f, now)
    if late == "call_back_next_day":  # 01:00 the next day: the missed call is processed
        await calls.save_call(db, CallRecord("b.1", "outgoing", "outgoing", "", "101", NUMBERS[8], "", (), "101",
                                             day1 + 7200, day1 + 7205, day1 + 7300, 5.0, 95.0, "caller", ""))
    elif late == "phone_added":  # the answered caller's number joins the booked patient's card
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO patient_phones (patient_id, e164) VALUES (?, ?)", (pids[1], f"+{NUMBERS[0]}"))
    elif late == "booked_later":
        await schedule.book(db, patient_id=pids[0], doctor_id=1, minutes=30, now=day1 - 3500 + 29 * 60,
                            starts_at=datetime.fromtimestamp(T0 + 31 * 86400, TZ))
    elif late == "typed_by_hand":
        async with db.transaction() as tx:
            await contacts.typed_by_hand(tx, "a.1", "employee")
    elif late == "tagged":
        await tags.set_tags(db, "a.1", [], "Спросил про МРТ", ids[1])
    elif late == "dismissed":
        await tags.dismiss(db, "a.1", ids[1])
    elif late == "deleted":
        async with db.transaction() as tx:
            await tx.execute("DELETE FROM calls WHERE linkedid = 'm.1'")
    else:
        async with db.transaction() as tx:
            await tx.execute("UPDATE appointments SET patient_id = ? WHERE id = ?", (pids[0], booked))
    assert await _figures(db, f, now) != before, late
    await assert_same(db, f, now)


@pytest.mark.parametrize("overtaken", [False, True])
async def test_a_day_written_while_it_is_read_beside_the_writer_is_not_left_stale(
        clinic, monkeypatch: pytest.MonkeyPatch, overtaken: bool) -> None:
    """#31: a day's totals are read beside the one writer and swapped in by a short transaction.
    A call saved into that day between the read and the swap must still reach the report: either
    its mark waits for the next refresh, or (``overtaken``) another refresh has taken the mark
    and reads the newer day: then the stale totals must not be stored as if they were current."""
    db, _, _ = clinic
    rnd = random.Random(11)
    for i in range(20):
        await calls.save_call(db, record(rnd, i))
    f, now = _whole_period(), T0 + DAYS * 86400
    await assert_same(db, f, now)
    at = T0 + 2 * 86400 + 12 * 3600
    first = CallRecord("f.1", "incoming", "missed", DIDS[0], NUMBERS[3], DIDS[0], "reception",
                       (LegRecord("101", "f.1.101", "no_answer", at, None, at + 20, True),), "", at, None,
                       at + 20, 20.0, 0.0, "caller", "")
    await calls.save_call(db, first)  # a day to recompute
    late = dataclasses.replace(first, linkedid="late.1", legs=(dataclasses.replace(first.legs[0], uniqueid="late.1.101"),))  # the same moment: the same day
    reading = db.read

    its_day = datetime.fromtimestamp(late.started_at, TZ).date()

    async def read_then_write(fn):  # type: ignore[no-untyped-def]
        rows = await reading(fn)  # the day as it was
        if fn.keywords["day"] != its_day:
            return rows
        monkeypatch.setattr(db, "read", reading)  # once
        await calls.save_call(db, late)  # written before those rows are stored
        if overtaken:  # another refresh (a report's, another box's) took the new mark, still reading
            await call_stats._take_marks(db, TZ)
        return rows

    monkeypatch.setattr(db, "read", read_then_write)
    await call_stats.refresh(db, TZ)
    assert db.read is reading  # the write came while the day was read
    await assert_same(db, f, now)

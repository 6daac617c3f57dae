"""«История обращений» from the stored days (crm.appeal_days) equals the live computation over the
same period (crm.appeals.build): the same обращения, records, main results, successes and facets,
for random periods, after each kind of write into a stored day (the triggers of migration 0023
forget it), when requests fall overdue as days pass, across midnight, and when a write comes
between a day's reads and its store (it is not stored)."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm import appeal_days, beside, callbacks, calls, comments, patients, schedule, shifts, users
from crm import appeals as store
from crm.clock import SettableClock
from crm.db import Database
from crm.demo import load_demo
from crm.rules import appeals as ap
from crm.rules.call_records import CallRecord, LegRecord
from crm.storage import database

TZ = ZoneInfo("Europe/Moscow")
DAY0 = date(2026, 11, 10)
T0 = datetime.combine(DAY0, datetime.min.time(), TZ).timestamp()
DAYS = 6
NUMBERS = [f"7916444{i:04d}" for i in range(10)]


def call(lid: str, t0: float, number: str, *, outgoing: bool = False, answered: bool = True,
         talk: float = 60.0) -> CallRecord:
    if outgoing:
        return CallRecord(lid, "outgoing", "outgoing" if answered else "outgoing_unanswered", "", "101", number, "",
                          (), "101", t0, t0 + 5 if answered else None, t0 + 5 + (talk if answered else 20), 5.0,
                          talk if answered else 0.0, "caller", "")
    leg = LegRecord("101", lid + ".1", "answered" if answered else "no_answer", t0, t0 + 3 if answered else None,
                    t0 + 20, not answered)
    return CallRecord(lid, "incoming", "incoming" if answered else "missed", "74951110001", number, "74951110001",
                      "reception", (leg,), "101" if answered else "", t0, t0 + 3 if answered else None,
                      t0 + 3 + (talk if answered else 17), 3.0, talk if answered else 0.0, "caller",
                      f"{lid}.wav" if answered else "")


@pytest.fixture
async def clinic(db_location: Path | str):
    clock = SettableClock(T0)
    db = database(db_location, clock)
    await db.open()
    await load_demo(db, now=T0 - 86400 * 30, robot_patients=False)
    admin = await users.create_user(db, "anna", "pw", full_name="Анна")
    await shifts.bind(db, admin, "101", datetime.fromtimestamp(T0 - 86400, TZ).isoformat())
    pids = [await patients.add_patient(db, "Пациент", f"№{n}", phone_numbers=(f"+{n}",)) for n in NUMBERS[:6]]
    yield db, clock, admin, pids
    await db.close()


async def fill(db: Database, clock: SettableClock, admin: int, pids: list[int], rnd: random.Random, n: int,
               first: int = 0) -> list[CallRecord]:
    topics = await comments.topics(db)
    slot = iter(range(first * 1000, first * 1000 + 1000))
    saved = []
    for i in range(first, first + n):
        t0 = T0 + rnd.randrange(DAYS * 24 * 60) * 60
        if rnd.random() < 0.1:  # a long talk that may cross midnight
            t0 = T0 + rnd.randrange(DAYS) * 86400 + 23.5 * 3600
        r = call(f"{i}.0", t0, rnd.choice(NUMBERS), outgoing=rnd.random() < 0.3, answered=rnd.random() < 0.7,
                 talk=rnd.choice((30.0, 600.0, 3600.0)))
        await calls.save_call(db, r)
        saved.append(r)
        roll = rnd.random()
        pid = rnd.choice(pids)
        if roll < 0.25:
            await comments.save_comment(db, r.linkedid, caller_type=rnd.choice(("wants_booking", "other", "patient_question")),
                                        topic_id=rnd.choice(topics)["id"], patient_id=None, text="Комментарий",
                                        user_id=admin)
        elif roll < 0.5:  # booked around the contact: inside or just outside the window
            created = rnd.choice((r.started_at - 1900, r.started_at - 1700, r.ended_at + 1700, r.ended_at + 1900))
            await schedule.book(db, patient_id=pid, doctor_id=1, minutes=30, now=created,
                                starts_at=datetime.fromtimestamp(T0 + 40 * 86400 + next(slot) * 3600, TZ))
        elif roll < 0.6:
            clock.set(r.ended_at + 300)
            await schedule.add_waiting(db, pid, "терапевт", "", admin, at=r.ended_at + 300)
        elif roll < 0.7:
            await callbacks.create_request(db, callbacks.NewRequest(phone=f"+{rnd.choice(NUMBERS)}",
                                                                    source_name="Сайт", service="Чистка"),
                                           r.started_at + 60)
    return saved


async def live(db: Database, first: date, last: date, today: date) -> list[ap.Appeal]:
    since = datetime.combine(first, datetime.min.time(), TZ).timestamp()
    until = datetime.combine(last + timedelta(days=1), datetime.min.time(), TZ).timestamp()
    return (await store.build(db, since, until, today, TZ)).appeals


async def assert_summed_without_days(db: Database, period: appeal_days.Period, pick: appeal_days.Pick) -> None:
    """A long period's page reads its groups without the days (#31): the same sums per group."""
    summed: dict[tuple[str, ...], list[int]] = {}
    for g in await period.groups(db, pick):
        n = summed.setdefault(g[1:6], [0, 0])
        n[0], n[1] = n[0] + g.n, n[1] + g.contacts
    assert {(g.day, *g[1:6]): [g.n, g.contacts] for g in await period.groups(db, pick, by_day=False)} == {
        (period.first, *k): v for k, v in summed.items()}


async def assert_same(db: Database, first: date, last: date, today: date) -> list[ap.Appeal]:
    """The period from the stored days (counted in SQL) equals the live computation: the
    обращения, their groups, and the same for the success and employee filters."""
    expected = await live(db, first, last, today)
    facets = [ap.facet_of(a) for a in expected]
    period = await appeal_days.period(db, first, last, today, TZ)
    assert period.stored  # every day could be stored
    for pick in (appeal_days.Pick(), appeal_days.Pick((ap.BOOKED, ap.OPEN_REQUESTS)), appeal_days.Pick(employee="Анна"),
                 appeal_days.Pick((ap.NOT_BOOKED,), "Анна")):
        chosen = [a for a, f in zip(expected, facets, strict=True) if pick.matches(f)]
        assert await period.appeals(db, await period.refs(db, pick)) == chosen, (first, last, pick)
        assert sorted(await period.groups(db, pick)) == sorted(ap.group_facets(f for f in facets if pick.matches(f)))
        await assert_summed_without_days(db, period, pick)
        assert await period.appeals(db, await period.refs(db, pick, 1, 2)) == chosen[1:3]
        assert await period.appeals(db, await period.refs(db, pick, 2)) == chosen[2:]
        shown = [a async for day in period.by_day(db, pick) for a in day]
        assert shown == chosen
    return expected


async def test_stored_days_equal_the_live_computation(clinic) -> None:
    db, clock, admin, pids = clinic
    rnd = random.Random(5)
    await fill(db, clock, admin, pids, rnd, 90)
    today = DAY0 + timedelta(days=DAYS)
    whole = await assert_same(db, DAY0, DAY0 + timedelta(days=DAYS), today)
    assert len(whole) > 40 and any(a.records for a in whole) and any(a.success == ap.OPEN_REQUESTS for a in whole)
    for _ in range(6):
        first = DAY0 + timedelta(days=rnd.randrange(DAYS))
        await assert_same(db, first, first + timedelta(days=rnd.randrange(3)), today)
    # more writes into stored days, of every kind, then compare again
    await fill(db, clock, admin, pids, rnd, 40, first=500)
    await assert_same(db, DAY0, DAY0 + timedelta(days=DAYS), today)
    # ten days later the open requests are overdue: computed anew, not read as they were
    await assert_same(db, DAY0, DAY0 + timedelta(days=DAYS), today + timedelta(days=10))


LATE = ("comment", "booking_after_midnight", "status", "request_closed", "reply", "action", "channel_rule",
        "user_renamed", "call_deleted", "phone_of_replier", "appointment_imported", "waiting_imported")


@pytest.mark.parametrize("late", LATE)
async def test_each_kind_of_write_forgets_the_stored_day(clinic, late: str) -> None:
    db, clock, admin, pids = clinic
    night = T0 + 23 * 3600 + 50 * 60  # 23:50 on the first day, a talk of half an hour
    await calls.save_call(db, call("n.0", night, NUMBERS[0], talk=1800.0))
    await calls.save_call(db, call("o.0", T0 + 10 * 3600, NUMBERS[1], outgoing=True))
    await calls.save_call(db, call("p.0", T0 + 14 * 3600, NUMBERS[3], outgoing=True))
    booked = await schedule.book(db, patient_id=pids[1], doctor_id=1, minutes=30, now=T0 + 10 * 3600 + 100,
                                 starts_at=datetime.fromtimestamp(T0 + 30 * 86400, TZ))
    req = await callbacks.create_request(db, callbacks.NewRequest(phone=f"+{NUMBERS[2]}", source_name="Сайт"),
                                         T0 + 12 * 3600)
    today = DAY0 + timedelta(days=2)
    before = await assert_same(db, DAY0, DAY0 + timedelta(days=1), today)
    if late == "comment":
        topic = (await comments.topics(db))[0]
        await comments.save_comment(db, "o.0", caller_type="patient_question", topic_id=topic["id"],
                                    patient_id=None, text="Спросила про цены", user_id=admin)
    elif late == "booking_after_midnight":  # 20 min after the night talk ended, on the next day
        await schedule.book(db, patient_id=pids[0], doctor_id=1, minutes=30, now=night + 1800 + 8 + 1200,
                            starts_at=datetime.fromtimestamp(T0 + 31 * 86400, TZ))
    elif late == "status":
        await schedule.set_status(db, booked, "completed", at=T0 + 30 * 86400 + 3600)
    elif late == "request_closed":
        async with db.transaction() as tx:
            await tx.execute("UPDATE callback_requests SET state = 'closed', outcome = 'contacted', closed_ts = ?"
                             " WHERE id = ?", (T0 + 13 * 3600, req.request_id))
    elif late == "reply":
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO escort_log (appointment_id, scenario, ts, what, detail) VALUES"
                             " (?, 'reminder', ?, 'reply', 'Да, приду')", (booked, T0 + 15 * 3600))
    elif late == "action":  # the outgoing call followed by a closed task: «Пациент. Задача CRM»
        async with db.transaction() as tx:
            await schedule.log_action(tx, "task_done", T0 + 14 * 3600 + 200, pids[3], detail="Перезвонить")
    elif late == "channel_rule":  # the group and the channel exist already: the rule alone changes it
        async with db.transaction() as tx:
            cur = await tx.execute("INSERT INTO ad_channel_groups (name) VALUES ('Сайты')")
            cur = await tx.execute("INSERT INTO ad_channels (group_id, name) VALUES (?, 'Яндекс')", (cur.lastrowid,))
        before = await assert_same(db, DAY0, DAY0 + timedelta(days=1), today)
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO ad_channel_rules (channel_id, kind, value) VALUES (?, 'caller', ?)",
                             (cur.lastrowid, f"+{NUMBERS[0]}"))
    elif late == "appointment_imported":  # written without a CRM action (an import): the trigger alone
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO appointments (patient_id, doctor_id, starts_at, ends_at, starts_ts, ends_ts,"
                             " status, source, created_at, created_ts, updated_at) VALUES (?, 1, '2026-12-20T10:00',"
                             " '2026-12-20T10:30', ?, ?, 'confirmed', 'import', '', ?, '')",
                             (pids[3], T0 + 40 * 86400, T0 + 40 * 86400 + 1800, T0 + 14 * 3600 + 300))
    elif late == "waiting_imported":
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO waiting_list (patient_id, specialty, created_at) VALUES (?, 'хирург', ?)",
                             (pids[3], datetime.fromtimestamp(T0 + 14 * 3600 + 300, TZ).isoformat()))
    elif late == "user_renamed":
        async with db.transaction() as tx:
            await tx.execute("UPDATE users SET full_name = 'Анна Сергеевна' WHERE id = ?", (admin,))
    elif late == "call_deleted":
        async with db.transaction() as tx:
            await tx.execute("DELETE FROM calls WHERE linkedid = 'o.0'")
    else:  # a reply from a patient, then her number changes: the reply's number (its client) changes
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO escort_log (appointment_id, scenario, ts, what, detail) VALUES"
                             " (?, 'reminder', ?, 'reply', 'Да')", (booked, T0 + 15 * 3600))
        before = await assert_same(db, DAY0, DAY0 + timedelta(days=1), today)
        async with db.transaction() as tx:
            await tx.execute("UPDATE patient_phones SET e164 = ? WHERE patient_id = ?", (f"+{NUMBERS[8]}", pids[1]))
    after = await assert_same(db, DAY0, DAY0 + timedelta(days=1), today)
    assert after != before, late  # the write mattered, and the stored days followed it


async def test_a_write_between_the_reads_and_the_store_is_not_lost(clinic) -> None:
    """A day computed from reads older than a write is returned but not stored; a stored day
    changed between the page's two reads (its facets, then its обращения) is computed again."""
    db, clock, admin, pids = clinic
    await calls.save_call(db, call("a.0", T0 + 3600, NUMBERS[0]))
    built = await store.build(db, T0, T0 + 86400, DAY0, TZ)
    seen = await appeal_days.epoch(db)
    await calls.save_call(db, call("b.0", T0 + 7200, NUMBERS[3]))  # meanwhile
    assert not await appeal_days.save(db, DAY0, TZ, DAY0, built, seen)
    assert await appeal_days.stored_days(db, DAY0, DAY0, TZ, DAY0) == {}
    period = await appeal_days.period(db, DAY0, DAY0, DAY0, TZ)  # computes and stores it
    assert DAY0 in await appeal_days.stored_days(db, DAY0, DAY0, TZ, DAY0)
    period = await appeal_days.period(db, DAY0, DAY0, DAY0, TZ)
    refs = await period.refs(db, appeal_days.Pick())
    assert period.stored and not period.decoded and len(refs) == 2
    await calls.save_call(db, call("c.0", T0 + 9000, NUMBERS[5]))  # forgets the day after it was counted
    shown = await period.appeals(db, refs)
    assert [a.first.id for a in shown] == [a.first.id for a in (await live(db, DAY0, DAY0, DAY0))[:2]]
    # a stored day is valid in its time zone only, and for the date it was computed on while
    # its requests could still fall overdue
    await appeal_days.period(db, DAY0, DAY0, DAY0, TZ)
    assert await appeal_days.stored_days(db, DAY0, DAY0, ZoneInfo("Asia/Yekaterinburg"), DAY0) == {}
    assert await appeal_days.stored_days(db, DAY0, DAY0, TZ, DAY0 + timedelta(days=1)) == {}
    assert appeal_days.settled(DAY0, DAY0 + timedelta(days=9)) and not appeal_days.settled(DAY0, DAY0 + timedelta(days=8))


def test_the_triggers_cover_the_windows() -> None:
    from crm.db import migration_files
    from crm.rules import windows

    text = {name: sql for _, name, sql in migration_files()}["0023_appeal_days.sql"]  # as applied
    assert f"+ {windows.APPOINTMENT_LINK};" in text and f"- {windows.LONGEST_CONTACT} AND" in text
    assert windows.CRM_ACTION_LINK <= windows.LONGEST_CONTACT and windows.CANCEL_LINK <= windows.LONGEST_CONTACT
    assert appeal_days.SETTLED_DAYS > 7  # callback_rules: a request open for 7 full days is overdue


async def test_warming_stores_the_missing_days_once(clinic) -> None:
    db, clock, admin, pids = clinic
    await fill(db, clock, admin, pids, random.Random(3), 30)
    today = DAY0 + timedelta(days=DAYS)
    assert await appeal_days.warm(db, DAY0, today, today, TZ) == DAYS + 1
    assert await appeal_days.warm(db, DAY0, today, today, TZ) == 0  # nothing written since
    assert len(await appeal_days.stored_days(db, DAY0, today, TZ, today)) == DAYS + 1
    await calls.save_call(db, call("late.0", T0 + 86400 + 600, NUMBERS[4]))  # forgets that day only
    assert await appeal_days.warm(db, DAY0, today, today, TZ) == 1
    await assert_same(db, DAY0, today, today)


async def test_days_warmed_in_the_passes_own_process_equal_the_live_computation(clinic) -> None:
    """The background pass computes in a child process (crm.beside); the writer swaps its rows in."""
    db, clock, admin, pids = clinic
    await fill(db, clock, admin, pids, random.Random(8), 40)
    today = DAY0 + timedelta(days=DAYS)
    async with beside.apart(db) as computer:
        assert await appeal_days.warm(db, DAY0, today, today, TZ, computer) == DAYS + 1
        await calls.save_call(db, call("late.1", T0 + 600, NUMBERS[2]))  # the first day forgotten again
        assert await appeal_days.warm(db, DAY0, today, today, TZ, computer) == 1
    assert len(await appeal_days.stored_days(db, DAY0, today, TZ, today)) == DAYS + 1
    await assert_same(db, DAY0, today, today)


async def test_a_period_whose_days_cannot_be_stored_is_counted_in_memory_alike(clinic, monkeypatch) -> None:
    """When a day cannot be stored (a write came, the database is held), the page works from its
    facets in memory beside the stored days: the same обращения, groups, pages and days."""
    db, clock, admin, pids = clinic
    await fill(db, clock, admin, pids, random.Random(11), 40)
    today = DAY0 + timedelta(days=DAYS)
    await appeal_days.warm(db, DAY0, DAY0 + timedelta(days=2), today, TZ)  # some days stored, some not

    async def refused(*_: object) -> bool:
        return False

    monkeypatch.setattr(appeal_days, "save", refused)
    expected = await live(db, DAY0, today, today)
    facets = [ap.facet_of(a) for a in expected]
    period = await appeal_days.period(db, DAY0, today, today, TZ)
    # the three stored days counted in SQL, the others (not stored) in memory beside them (#31:
    # a year's page on a busy day held the whole year's facets, 800 MB at 1M calls)
    assert period.stored and period.live == {DAY0 + timedelta(days=i) for i in range(3, DAYS + 1)}
    assert {f.day for f in period.facets} <= period.live
    for pick in (appeal_days.Pick(), appeal_days.Pick((ap.BOOKED,)), appeal_days.Pick(employee="Анна")):
        chosen = [a for a, f in zip(expected, facets, strict=True) if pick.matches(f)]
        assert await period.appeals(db, await period.refs(db, pick)) == chosen
        assert await period.appeals(db, await period.refs(db, pick, 1, 3)) == chosen[1:4]
        for offset in range(0, len(chosen), 3):  # pages across the stored and the live days
            assert await period.appeals(db, await period.refs(db, pick, offset, 4)) == chosen[offset:offset + 4]
        assert await period.appeals(db, await period.refs(db, pick, 5)) == chosen[5:]
        assert sorted(await period.groups(db, pick)) == sorted(ap.group_facets(f for f in facets if pick.matches(f)))
        await assert_summed_without_days(db, period, pick)
        assert [a async for day in period.by_day(db, pick) for a in day] == chosen

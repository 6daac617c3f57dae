"""The seeds' windows are written once (crm.rules.windows); the SQL that filters calls by them
is built from the same constants and agrees with the pure predicates at the edges."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm import call_listing, calls, clinic_settings, patients
from crm.db import Database
from crm.rules import windows
from crm.rules.booking import BookingError, slot_end
from crm.rules.call_records import CallRecord, LegRecord

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()
MIN = 60.0


def test_missed_call_processing_edges() -> None:
    day = windows.MISSED_CALL_PROCESSING
    assert windows.missed_call_processed(T0, T0 + day)
    assert not windows.missed_call_processed(T0, T0 + day + 1)
    assert not windows.missed_call_processed(T0, T0)  # the same moment is not "after"
    assert windows.processing_deadline(T0) == T0 + 24 * 3600


@pytest.mark.parametrize(("created", "answered", "from_call", "expected"), [
    (T0 - 29 * MIN, True, False, True), (T0 - 31 * MIN, True, False, False),
    (T0 + 5 * MIN + 29 * MIN, True, False, True), (T0 + 5 * MIN + 31 * MIN, True, False, False),
    (T0 + MIN, False, False, False),  # a missed call converts nothing by time
    (T0 + 600 * MIN, False, True, True),  # booked from the call's card: always
])
def test_appointment_converts_edges_with_the_nearby_setting(created: float, answered: bool, from_call: bool,
                                                            expected: bool) -> None:
    assert windows.appointment_converts(created=created, call_started=T0, call_ended=T0 + 5 * MIN,
                                        answered=answered, booked_from_call=from_call, nearby=True) is expected


@pytest.mark.parametrize(("created", "from_call", "expected"), [
    (T0 + MIN, False, False),  # during the call, but not tied to it: a colleague's booking
    (T0 - 29 * MIN, False, False), (T0 + 5 * MIN + 1, False, False),
    (T0 + MIN, True, True), (T0 + 600 * MIN, True, True),  # the call's card / panel: always
])
def test_appointment_converts_by_seed_000_by_default(created: float, from_call: bool, expected: bool) -> None:
    """Seed 000: «A call conversion is considered successful if the administrator: clicked
    «Назначить приём» on the call card…; During the call, scheduled an appointment through a free
    slot…; opened the application creation panel during the conversation and completed the
    recording… after the conversation ended». Each of the three stores the call with the
    appointment; a booking made by someone else near the call is not the call's conversion."""
    assert windows.appointment_converts(created=created, call_started=T0, call_ended=T0 + 5 * MIN,
                                        answered=True, booked_from_call=from_call) is expected


@pytest.mark.parametrize("created, starts, cancelled, expected", [
    (T0 - 1, T0 + 1, False, True),  # booked before the call, for after it
    (T0, T0 + 86400, False, False),  # booked at the call's very start: made by this call
    (T0 - 86400, T0, False, False),  # the visit began as the call did: not ahead any more
    (T0 - 86400, T0 - 1, False, False),  # a past visit
    (T0 - 1, T0 + 86400, True, False),  # cancelled
])
def test_appointment_pending_edges(created: float, starts: float, cancelled: bool, expected: bool) -> None:
    assert windows.appointment_pending(created=created, starts=starts, cancelled=cancelled,
                                       call_started=T0) is expected


def test_within_after() -> None:
    assert windows.within_after(T0, T0 + windows.COMMENT_LINK, windows.COMMENT_LINK)
    assert not windows.within_after(T0, T0 + windows.COMMENT_LINK + 1, windows.COMMENT_LINK)
    assert not windows.within_after(T0, T0 - 1, windows.COMMENT_LINK)
    assert (windows.COMMENT_LINK, windows.CANCEL_LINK, windows.CRM_ACTION_LINK) == (300, 900, 900)


def test_a_move_is_checked_like_a_booking() -> None:
    start = datetime.fromtimestamp(T0 + 3600, UTC)
    assert slot_end(start, 30, T0).timestamp() == T0 + 3600 + 1800
    for minutes in (0, -5, 481):
        with pytest.raises(BookingError, match="длительность"):
            slot_end(start, minutes, T0)
    with pytest.raises(BookingError, match="прошло"):
        slot_end(start, 30, T0 + 7200)


def call(lid: str, phone: str, started: float, answered: bool, minutes: float = 5) -> CallRecord:
    ended = started + minutes * MIN
    leg = LegRecord("101", lid + ".1", "answered" if answered else "no_answer", started,
                    started + 5 if answered else None, ended, not answered)
    return CallRecord(lid, "incoming", "incoming" if answered else "missed", "74951110001", phone,
                      "74951110001", "reception", (leg,), "101" if answered else "", started,
                      started + 5 if answered else None, ended, 5.0, ended - started - 5 if answered else 0.0,
                      "caller", "")


async def test_sql_and_predicates_agree(tmp_path: Path) -> None:
    """CONVERTED / PROCESSED (SQL) against appointment_converts / missed_call_processed, for
    appointments and call-backs just inside and just outside each window."""
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO branches (name) VALUES ('B')")
            await tx.execute("INSERT INTO doctors (id, branch_id, full_name, specialty) VALUES (1, 1, 'Д', 'Терапевт')")
        cases = []  # (phone, created offset from the call's start, answered)
        for i, (offset, answered) in enumerate([(-29, True), (-31, True), (34, True), (36, True), (1, False)]):
            phone = f"+7916000{i:04d}"
            pid = await patients.add_patient(db, "П", f"{i}", "", phone_numbers=(phone,))
            started = T0 + i * 86400 * 3
            await calls.save_call(db, call(f"{started}.{i}", phone, started, answered))
            created = started + offset * MIN
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO appointments (patient_id, doctor_id, branch_id, starts_at, ends_at, starts_ts,"
                    " ends_ts, created_at, created_ts, updated_at) VALUES (?, 1, 1, '', '', ?, ?, '', ?, '')",
                    (pid, started + 86400, started + 86400 + 1800, created))
            cases.append((phone, started, created, answered))
        converting = {}
        for nearby in (False, True):
            await clinic_settings.put(db, windows.CONVERSION_NEARBY, nearby)
            converting[nearby] = 0
            for phone, started, created, answered in cases:
                sql = await db.fetchone(f"SELECT {call_listing.CONVERTED} FROM calls c WHERE c.phone_e164 = ?", (phone,))
                expected = windows.appointment_converts(created=created, call_started=started,
                                                        call_ended=started + 5 * MIN, answered=answered,
                                                        booked_from_call=False, nearby=nearby)
                assert bool(sql[0]) is expected, (phone, created - started, nearby)
                converting[nearby] += expected
                shown = await call_listing.list_calls(db, call_listing.CallFilter(phones=(phone,)))
                assert shown[0]["converted"] is expected
                live = await call_listing.converted_live(db, "x", phone, started, started + 5 * MIN)
                assert live is windows.appointment_converts(created=created, call_started=started,
                                                            call_ended=started + 5 * MIN, answered=True,
                                                            booked_from_call=False, nearby=nearby)
        assert converting == {False: 0, True: 2}  # none is tied to its call: only the setting converts them
        # call-backs of a missed call, just inside and just outside the day
        day = windows.MISSED_CALL_PROCESSING
        for n, back in enumerate((day - 1, day + 1)):
            phone, started = f"+7903000000{n}", T0 + 100 * 86400 + n * 10 * 86400
            await calls.save_call(db, call(f"m{n}", phone, started, False))
            await calls.save_call(db, call(f"b{n}", phone, started + back, True))
            sql = await db.fetchone(f"SELECT {call_listing.PROCESSED} FROM calls c WHERE c.linkedid = ?", (f"m{n}",))
            assert bool(sql[0]) is windows.missed_call_processed(started, started + back)
    finally:
        await db.close()


def test_the_guardian_filled_in_when_booking_a_ward() -> None:
    """Seed 000: «the guardian who was last linked or … previously selected»."""
    from crm.rules.booking import default_guardian

    mother, father = (1, ["+79265554433"]), (2, ["+79260000002", "+79260000003"])
    assert default_guardian([mother, father], "+79260000003", 1) == 2  # the one calling
    assert default_guardian([mother, father], "+79990000000", 2) == 2  # the last appointment's
    assert default_guardian([mother, father], None, 99) == 1  # a stale one: the first
    assert default_guardian([], "+79265554433", 1) is None


@pytest.mark.parametrize(("offset", "joins"), [(-5 * MIN - 1, False), (-4 * MIN - 59, True), (0, True),
                                               (4 * MIN + 59, True), (5 * MIN, True), (5 * MIN + 60, False)])
def test_comment_joins_edges(offset: float, joins: bool) -> None:
    assert windows.comment_joins(T0, T0 + offset) is joins


async def test_a_comment_entered_by_hand_joins_its_call_or_stands_alone(tmp_path: Path) -> None:
    """Seed 004: by time (5 min by default; a setting), number and direction; the nearest call;
    else a «Комментарий» of its own, deletable (a real call or a «Диалог» never is)."""
    from zoneinfo import ZoneInfo

    from crm import comments

    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        phone = "+79160001122"
        await calls.save_call(db, call("pbx.1", phone, T0, True))  # an incoming call at T0
        moment = datetime.fromtimestamp
        tz = ZoneInfo("Europe/Moscow")
        near = await comments.add_manual_call(db, direction="incoming", phone=phone, started=moment(T0 + 4 * MIN + 59, tz),
                                              minutes=1, user_id=None, kind="comment")
        assert near == ("pbx.1", True)
        other_way = await comments.add_manual_call(db, direction="outgoing", phone=phone, started=moment(T0, tz),
                                                   minutes=1, user_id=None, kind="comment")
        late = await comments.add_manual_call(db, direction="incoming", phone=phone, started=moment(T0 + 5 * MIN + 60, tz),
                                              minutes=1, user_id=None, kind="comment")
        wider = await comments.add_manual_call(db, direction="incoming", phone=phone, started=moment(T0 + 9 * MIN, tz),
                                               minutes=1, user_id=None, kind="comment", link_window=10 * MIN)
        dialog = await comments.add_manual_call(db, direction="incoming", phone=phone, started=moment(T0, tz),
                                                minutes=1, user_id=None, kind="dialog")
        assert not other_way[1] and not late[1] and not dialog[1] and wider == ("pbx.1", True)
        kinds = dict(db.query_now("SELECT linkedid, manual_kind FROM calls WHERE source = 'manual'"))
        assert kinds == {other_way[0]: "comment", late[0]: "comment", dialog[0]: "dialog"}
        ids = dict(db.query_now("SELECT linkedid, id FROM calls"))
        assert not await comments.delete_unlinked_comment(db, ids["pbx.1"])  # a real call: never
        assert not await comments.delete_unlinked_comment(db, ids[dialog[0]])  # a «Диалог»: never
        assert await comments.delete_unlinked_comment(db, ids[late[0]])
        assert late[0] not in dict(db.query_now("SELECT linkedid, id FROM calls"))
    finally:
        await db.close()


async def test_the_indexed_conversion_test_equals_the_plain_one(tmp_path: Path) -> None:
    """CONVERTED and HAD_APPOINTMENT are written as several EXISTS for the indexes' sake; on
    random calls and appointments (booked from calls, near calls, far from them, unanswered
    calls, cancelled ones) they mark exactly the calls the plain one-EXISTS forms mark."""
    import random

    plain = (
        "EXISTS (SELECT 1 FROM appointments a WHERE a.call_linkedid = c.linkedid OR"
        f" (c.answered_at IS NOT NULL AND a.created_ts >= c.started_ts - {windows.APPOINTMENT_LINK}"
        f" AND a.created_ts <= c.ended_ts + {windows.APPOINTMENT_LINK} AND a.patient_id IN {call_listing.CALL_PATIENTS}))"
    )
    rnd = random.Random(5)
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO branches (name) VALUES ('B')")
            await tx.execute("INSERT INTO doctors (id, branch_id, full_name, specialty) VALUES (1, 1, 'Д', 'Т')")
        pids = [await patients.add_patient(db, "П", str(i), "", phone_numbers=(f"+7916100{i:04d}",)) for i in range(12)]
        starts = []
        for i in range(120):
            n = rnd.randrange(14)  # 12 patients' numbers and two strangers'
            phone, started = f"+7916100{n:04d}", T0 + rnd.random() * 86400 * 5
            await calls.save_call(db, call(f"L{i}", phone, started, rnd.random() < 0.75))
            starts.append((f"L{i}", started))
        # a card made after the calls for one stranger's number: its calls' patients are then
        # the number's owner, not a candidate known when they rang
        pids.append(await patients.add_patient(db, "Новый", "0", "", phone_numbers=("+79161000012",)))
        async with db.transaction() as tx:
            for _ in range(80):
                lid, started = rnd.choice(starts)
                created = started + rnd.choice((-40, -29, -1, 3, 34, 36, 200)) * MIN
                await tx.execute(
                    "INSERT INTO appointments (patient_id, doctor_id, branch_id, starts_at, ends_at, starts_ts, ends_ts,"
                    " created_at, created_ts, updated_at, call_linkedid) VALUES (?, 1, 1, '', '', ?, ?, '', ?, '', ?)",
                    (rnd.choice(pids), created + 86400, created + 88200, created, lid if rnd.random() < 0.1 else None))
            for _ in range(10):  # a few cancelled ones: "had an appointment" must not count them
                await tx.execute("UPDATE appointments SET status = 'cancelled' WHERE id = ?", (rnd.randrange(1, 81),))
        tied = db.query_now(f"SELECT c.linkedid, {call_listing.CONVERTED} FROM calls c ORDER BY c.id")
        assert tied == db.query_now("SELECT c.linkedid, EXISTS (SELECT 1 FROM appointments a WHERE"
                                    " a.call_linkedid = c.linkedid) FROM calls c ORDER BY c.id")
        await clinic_settings.put(db, windows.CONVERSION_NEARBY, True)
        fast = db.query_now(f"SELECT c.linkedid, {call_listing.CONVERTED} FROM calls c ORDER BY c.id")
        slow = db.query_now(f"SELECT c.linkedid, {plain} FROM calls c ORDER BY c.id")
        assert fast == slow and 10 < sum(v for _, v in fast) < 110  # both kinds of answer are there
        assert sum(v for _, v in tied) < sum(v for _, v in fast)
        had_plain = (
            "EXISTS (SELECT 1 FROM appointments a WHERE a.created_ts < c.started_ts AND a.starts_ts > c.started_ts"
            f" AND a.status <> 'cancelled' AND a.patient_id IN {call_listing.CALL_PATIENTS})"
        )
        fast = db.query_now(f"SELECT c.linkedid, {call_listing.HAD_APPOINTMENT} FROM calls c ORDER BY c.id")
        slow = db.query_now(f"SELECT c.linkedid, {had_plain} FROM calls c ORDER BY c.id")
        assert fast == slow and 10 < sum(v for _, v in fast) < 110
        # the history's page decides both in Python over the page's appointments: the same marks
        for nearby in (True, False):
            await clinic_settings.put(db, windows.CONVERSION_NEARBY, nearby)
            shown = {c["linkedid"]: c for c in await call_listing.list_calls(db, call_listing.CallFilter(limit=1000))}
            marks = db.query_now(f"SELECT c.linkedid, {call_listing.CONVERTED}, {call_listing.HAD_APPOINTMENT} FROM calls c")
            assert len(shown) == len(marks) == 120
            assert {lid: (shown[lid]["converted"], shown[lid]["had_appointment"]) for lid, _, _ in marks} == {
                lid: (bool(conv), bool(had)) for lid, conv, had in marks}
    finally:
        await db.close()

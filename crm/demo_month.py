"""A past month of the demo clinic (issue #33): so that a new user's first look at the panel
means something: calls answered, missed and called back, transfers, click-to-call, bookings
that follow calls and how the visits went, the confirmation robot's calls, the website's
callback requests, recordings with sound for the last week. Written once (only into a CRM
without calls), deterministic (a seeded random), through the CRM's own writers (``save_call``,
``book``, ``create_request`` and ``close``); every appointment it books lies in the past, so the
robots never call a demo patient for it."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from crm import callbacks, calls, schedule
from crm.callbacks import NewRequest
from crm.db import Database
from crm.rules.call_records import (
    ANSWERED,
    ANSWERED_ELSEWHERE,
    INCOMING,
    MISSED,
    NO_ANSWER,
    OUTGOING,
    OUTGOING_UNANSWERED,
    CallRecord,
    LegRecord,
)

PHONES = ("101", "102", "103")
RECORDED_DAYS = 7  # older recordings would have been compressed and expired anyway


@dataclass
class MonthCounts:
    calls: int = 0
    bookings: int = 0
    robot_calls: int = 0
    requests: int = 0
    recordings: int = 0


@dataclass
class _Clinic:
    numbers: list[tuple[int, str]]  # (patient, number)
    doctors: list[int]
    dids: list[tuple[str, str]]  # (number, queue)
    source: int | None


async def _clinic(db: Database) -> _Clinic:
    numbers = [(int(r[0]), str(r[1])) for r in await db.fetchall(
        "SELECT patient_id, e164 FROM patient_phones WHERE kind = 'mobile' ORDER BY id")]
    doctors = [int(r[0]) for r in await db.fetchall("SELECT id FROM doctors WHERE active = 1 ORDER BY id")]
    dids = [(str(r[0]), str(r[1] or "reception-ringall")) for r in await db.fetchall(
        "SELECT did, queue FROM clinic_numbers ORDER BY did")]
    source = await db.fetchone("SELECT id FROM callback_sources ORDER BY id LIMIT 1")
    return _Clinic(numbers, doctors, dids or [("74951110001", "reception-ringall")], int(source[0]) if source else None)


def _incoming(rnd: random.Random, lid: str, t: float, caller: str, did: str, queue: str, *,
              answered: bool, recording: bool) -> CallRecord:
    ring = rnd.uniform(3, 25) if answered else rnd.uniform(20, 60)
    who = rnd.choice(PHONES)
    talk = rnd.uniform(40, 420) if answered else 0.0
    end = t + ring + talk
    legs = []
    for ext in PHONES:
        if answered and ext == who:
            legs.append(LegRecord(ext, f"{lid}.{ext}", ANSWERED, t, t + ring, end, False))
        else:
            legs.append(LegRecord(ext, f"{lid}.{ext}", ANSWERED_ELSEWHERE if answered else NO_ANSWER, t,
                                  None, t + ring, not answered))
    if answered and rnd.random() < 0.1:  # passed on to a colleague halfway through
        other = rnd.choice([p for p in PHONES if p != who])
        half = t + ring + talk / 2
        legs.append(LegRecord(other, f"{lid}.{other}.t", ANSWERED, half, half + 4, end, False))
    return CallRecord(lid, "incoming", INCOMING if answered else MISSED, did, caller.lstrip("+"), did, queue,
                      tuple(legs), who if answered else "", t, t + ring if answered else None, end, ring, talk,
                      "caller" if rnd.random() < 0.6 or not answered else "callee",
                      f"{lid}.wav" if answered and recording else "")


def _outgoing(rnd: random.Random, lid: str, t: float, number: str, *, answered: bool, recording: bool) -> CallRecord:
    ring = rnd.uniform(4, 20) if answered else rnd.uniform(20, 40)
    talk = rnd.uniform(30, 300) if answered else 0.0
    who = rnd.choice(PHONES)
    return CallRecord(lid, "outgoing", OUTGOING if answered else OUTGOING_UNANSWERED, "", who, number.lstrip("+"),
                      "", (), who, t, t + ring if answered else None, t + ring + talk, ring, talk,
                      "caller" if answered else "callee", f"{lid}.wav" if answered and recording else "")


async def add_month(db: Database, now: float, tz: ZoneInfo, recordings: Path | None = None, sound: bytes = b"",
                    days: int = 30, seed: int = 33) -> MonthCounts:
    """The month before ``now``; nothing when the CRM has calls already."""
    counts = MonthCounts()
    if await db.fetchone("SELECT 1 FROM calls LIMIT 1"):
        return counts
    clinic = await _clinic(db)
    if not clinic.numbers or not clinic.doctors:
        return counts
    rnd = random.Random(seed)
    today = datetime.fromtimestamp(now, tz).date()
    serial = 0
    for back in range(days, -1, -1):  # today too, up to now
        day = today - timedelta(days=back)
        if day.weekday() == 6:
            continue  # closed on Sundays
        opening = datetime(day.year, day.month, day.day, 9, tzinfo=tz).timestamp()
        many = rnd.randint(6, 10) if day.weekday() == 5 else rnd.randint(16, 28)
        for t in sorted(opening + rnd.uniform(0, 11 * 3600) for _ in range(many)):
            if t > now - 900:
                break  # the day's calls so far (each ended before now)
            serial += 1
            lid = f"{int(t)}.{serial}"
            known = rnd.random() < 0.8
            patient, number = rnd.choice(clinic.numbers) if known else (None, f"+7916{rnd.randint(0, 9_999_999):07d}")
            recent = now - t < RECORDED_DAYS * 86400
            did, queue = rnd.choice(clinic.dids)
            roll = rnd.random()
            if roll < 0.62:
                record = _incoming(rnd, lid, t, number, did, queue, answered=True, recording=recent)
            elif roll < 0.82:
                record = _incoming(rnd, lid, t, number, did, queue, answered=False, recording=False)
            else:
                record = _outgoing(rnd, lid, t, number, answered=rnd.random() < 0.7, recording=recent)
            counts.calls += await _save(db, record, recordings, sound, counts)
            if record.call_type == MISSED and rnd.random() < 0.7:  # the reception calls back
                back_t = record.ended_at + rnd.uniform(600, 7200)
                if back_t < now:
                    serial += 1
                    again = _outgoing(rnd, f"{int(back_t)}.{serial}", back_t, number, answered=rnd.random() < 0.8,
                                      recording=recent)
                    counts.calls += await _save(db, again, recordings, sound, counts)
            if (patient is not None and record.call_type == INCOMING and rnd.random() < 0.35
                    and now - t > 7 * 86400):
                await _booking(db, rnd, record, patient, clinic.doctors, tz, counts)
        asked = opening + rnd.uniform(0, 10 * 3600)
        if clinic.source is not None and rnd.random() < 0.6 and asked + 3600 < now:
            await _request(db, rnd, clinic, asked, counts)
    return counts


async def _save(db: Database, record: CallRecord, recordings: Path | None, sound: bytes, counts: MonthCounts) -> int:
    if record.recording and recordings is not None and sound:
        await asyncio.to_thread(_write, recordings / record.recording, sound)
        counts.recordings += 1
    elif record.recording:
        record = replace(record, recording="")  # no sound to keep
    return 1 if await calls.save_call(db, record) is not None else 0


def _write(path: Path, sound: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sound)


async def _booking(db: Database, rnd: random.Random, record: CallRecord, patient: int, doctors: list[int],
                   tz: ZoneInfo, counts: MonthCounts) -> None:
    """Booked during the call, for a day within the following week; how the visit went."""
    visit_day = datetime.fromtimestamp(record.ended_at, tz).date() + timedelta(days=rnd.randint(1, 6))
    starts = datetime(visit_day.year, visit_day.month, visit_day.day, rnd.randint(10, 18),
                      rnd.choice((0, 30)), tzinfo=tz)
    try:
        appointment = await schedule.book(db, patient_id=patient, doctor_id=rnd.choice(doctors), starts_at=starts,
                                          minutes=30, now=record.ended_at, call_linkedid=record.linkedid)
    except schedule.BookingError:
        return  # that slot was taken: the patient was booked another day, not worth modelling
    counts.bookings += 1
    eve = starts.timestamp() - 86400 + rnd.uniform(3600, 5 * 3600)
    if rnd.random() < 0.6:  # the confirmation robot called the day before
        outcome = rnd.choice(("confirmed", "confirmed", "confirmed", "no_answer", "cancelled", "operator"))
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO escort_log (appointment_id, scenario, ts, what, channel, outcome)"
                             " VALUES (?, 'confirmation', ?, 'call', 'robot', ?)", (appointment, eve, outcome))
        counts.robot_calls += 1
    status = rnd.choices(("completed", "no_show", "cancelled"), (0.78, 0.08, 0.14))[0]
    await schedule.set_status(db, appointment, status, at=starts.timestamp())


async def _request(db: Database, rnd: random.Random, clinic: _Clinic, t: float, counts: MonthCounts) -> None:
    """A booking request from the aggregator's site, called back and closed."""
    patient, number = rnd.choice(clinic.numbers)
    intake = await callbacks.create_request(db, NewRequest(
        phone=number, source_name="НаПоправку", source_id=clinic.source, patient_name="",
        doctor=rnd.choice(("Стоматолог-терапевт", "Ортодонт", "Хирург", "")), service="Консультация"), t)
    outcome = rnd.choices(("contacted", "already_booked", "gave_up"), (0.75, 0.1, 0.15))[0]
    await callbacks.close(db, None, intake.request_id, outcome, "демо", t + rnd.uniform(120, 3600))
    counts.requests += 1

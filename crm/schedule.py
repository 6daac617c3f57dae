"""The minimal schedule: doctors with working hours, free slots, appointments with statuses,
the waiting list and tasks. Wall times are the clinic's local time; epoch seconds are kept
beside them for interval arithmetic (conversion windows, reminders)."""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm.dates import parse_moment
from crm.db import Database
from crm.rules.booking import (
    BookingError as BookingError,  # raised here; callers catch it from here
)
from crm.rules.booking import slot_end

time_now = _time.time  # the stamp of a CRM action when the caller gave none

STATUSES = {
    "unconfirmed": "Не подтверждён",
    "confirmed": "Подтверждён",
    "cancelled": "Отменён",
    "completed": "Пришёл (завершён)",
    "no_show": "Не пришёл",
}
ACTIVE = ("unconfirmed", "confirmed")


@dataclass(frozen=True)
class Slot:
    doctor_id: int
    starts_at: datetime  # aware, local
    ends_at: datetime
    appointment_id: int | None = None


def parse_local(text: str, tz: ZoneInfo) -> datetime:
    """"2026-11-23T10:00" (local wall time) -> aware datetime; raises BookingError."""
    try:
        value = parse_moment(text)
    except ValueError:
        raise BookingError("Неверное время приёма") from None
    return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)


def wall(value: datetime) -> str:
    """``2026-12-08T09:30``: an appointment's wall-clock time as stored (isoformat, not strftime:
    an import writes hundreds of thousands)."""
    return value.isoformat(timespec="minutes")[:16]


async def doctors(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT id, full_name, specialty, branch_id FROM doctors WHERE active = 1 ORDER BY full_name"
    )
    return [dict(r) for r in rows]


WEEKDAYS = ("Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс")


async def add_doctor(db: Database, full_name: str, specialty: str, branch_id: int | None,
                     weekdays: list[int], start_minute: int, end_minute: int, slot_minutes: int) -> int:
    """A doctor with the same working hours on the given weekdays (0 = Monday)."""
    full_name, specialty = " ".join(full_name.split())[:100], " ".join(specialty.split())[:100]
    if not full_name or not specialty:
        raise BookingError("Введите ФИО и специальность врача")
    if not weekdays or any(not 0 <= d <= 6 for d in weekdays):
        raise BookingError("Выберите рабочие дни")
    if not (0 <= start_minute < end_minute <= 24 * 60) or not 5 <= slot_minutes <= 240:
        raise BookingError("Неверные часы работы или длительность приёма")
    async with db.transaction() as tx:
        doc = int((await tx.execute(
            "INSERT INTO doctors (full_name, specialty, branch_id) VALUES (?, ?, ?)",
            (full_name, specialty, branch_id),
        )).lastrowid or 0)
        for day in sorted(set(weekdays)):
            await tx.execute(
                "INSERT INTO working_hours (doctor_id, weekday, start_minute, end_minute, slot_minutes)"
                " VALUES (?, ?, ?, ?, ?)",
                (doc, day, start_minute, end_minute, slot_minutes),
            )
        return doc


async def working_hours(db: Database) -> dict[int, list[dict[str, Any]]]:
    rows = await db.fetchall("SELECT * FROM working_hours ORDER BY doctor_id, weekday, start_minute")
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["doctor_id"], []).append(dict(r))
    return out


async def set_doctor_active(db: Database, doctor_id: int, active: bool) -> None:
    async with db.transaction() as tx:
        await tx.execute("UPDATE doctors SET active = ? WHERE id = ?", (int(active), doctor_id))


async def free_slots(db: Database, doctor_id: int, day: date, tz: ZoneInfo, now: float) -> list[Slot]:
    return [s for s in await day_slots(db, doctor_id, day, tz)
            if s.appointment_id is None and s.ends_at.timestamp() > now]


async def next_free_slot(db: Database, doctor_id: int, after: date, tz: ZoneInfo, now: float,
                         days: int = 60) -> Slot | None:
    """The doctor's first free slot after ``after`` within ``days`` (the booking form offers it
    when the chosen day is full or the doctor does not work that day)."""
    for n in range(1, days + 1):
        free = await free_slots(db, doctor_id, after + timedelta(days=n), tz, now)
        if free:
            return free[0]
    return None


async def day_slots(db: Database, doctor_id: int, day: date, tz: ZoneInfo) -> list[Slot]:
    """The doctor's slots on a day from working hours, each with the appointment holding it."""
    hours = await db.fetchall(
        "SELECT start_minute, end_minute, slot_minutes FROM working_hours"
        " WHERE doctor_id = ? AND weekday = ? ORDER BY start_minute",
        (doctor_id, day.weekday()),
    )
    midnight = datetime.combine(day, time(0), tz)
    start_ts, end_ts = midnight.timestamp(), (midnight + timedelta(days=1)).timestamp()
    booked = await db.fetchall(
        "SELECT id, starts_ts, ends_ts FROM appointments WHERE doctor_id = ? AND status IN"
        " ('unconfirmed', 'confirmed', 'completed') AND starts_ts < ? AND ends_ts > ?",
        (doctor_id, end_ts, start_ts),
    )
    slots = []
    for h in hours:
        minute = h["start_minute"]
        while minute + h["slot_minutes"] <= h["end_minute"]:
            s = midnight + timedelta(minutes=minute)
            e = s + timedelta(minutes=h["slot_minutes"])
            holder = next(
                (b["id"] for b in booked if b["starts_ts"] < e.timestamp() and b["ends_ts"] > s.timestamp()),
                None,
            )
            slots.append(Slot(doctor_id, s, e, holder))
            minute += h["slot_minutes"]
    return slots


async def book(
    db: Database,
    *,
    patient_id: int,
    doctor_id: int,
    starts_at: datetime,
    minutes: int,
    now: float,
    user_id: int | None = None,
    call_linkedid: str | None = None,
    guardian_id: int | None = None,
    comment: str = "",
    source: str = "panel",
    kind: str = "visit",
    notify_requested: bool = False,
) -> int:
    """Book a slot in one transaction; a slot already taken (even by a concurrent booking) or
    a time in the past is refused with a BookingError."""
    ends_at = slot_end(starts_at, minutes, now)
    async with db.transaction() as tx:
        doc = await (await tx.execute(
            "SELECT branch_id FROM doctors WHERE id = ? AND active = 1", (doctor_id,)
        )).fetchone()
        if doc is None:
            raise BookingError("Нет такого врача")
        if await (await tx.execute("SELECT 1 FROM patients WHERE id = ?", (patient_id,))).fetchone() is None:
            raise BookingError("Нет такого пациента")
        await _refuse_clash(tx, doctor_id, starts_at, ends_at)
        stamp = tx.stamp()
        cur = await tx.execute(
            "INSERT INTO appointments (patient_id, doctor_id, branch_id, guardian_id, starts_at,"
            " ends_at, starts_ts, ends_ts, status, source, kind, comment, call_linkedid, created_by,"
            " created_at, created_ts, updated_at, notify_requested)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'unconfirmed', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                patient_id, doctor_id, doc[0], guardian_id, wall(starts_at), wall(ends_at),
                starts_at.timestamp(), ends_at.timestamp(), source, kind, comment[:2000],
                call_linkedid, user_id, stamp, now, stamp, int(notify_requested),
            ),
        )
        waiting_closed = await tx.execute(
            "UPDATE waiting_list SET closed_at = ? WHERE patient_id = ? AND closed_at IS NULL",
            (stamp, patient_id),
        )
        appointment_id = int(cur.lastrowid or 0)
        await log_action(tx, "booked", now, patient_id, appointment_id=appointment_id, user_id=user_id,
                         detail=f"{wall(starts_at)}" + (", из листа ожидания" if waiting_closed.rowcount else ""))
        return appointment_id


async def _refuse_clash(tx: Any, doctor_id: int, starts_at: datetime, ends_at: datetime,
                        moving: int = 0) -> None:
    """Inside the booking's write transaction, so two bookings cannot both pass the check."""
    clash = await (await tx.execute(
        "SELECT 1 FROM appointments WHERE doctor_id = ? AND id <> ? AND status IN ('unconfirmed',"
        " 'confirmed', 'completed') AND starts_ts < ? AND ends_ts > ?",
        (doctor_id, moving, ends_at.timestamp(), starts_at.timestamp()),
    )).fetchone()
    if clash:
        raise BookingError("Это время уже занято")


async def reschedule(db: Database, appointment_id: int, starts_at: datetime, minutes: int,
                     now: float, doctor_id: int | None = None, user_id: int | None = None) -> None:
    """Move an appointment (keeps its id: details are not sent again; confirmation and
    reminder are planned anew for the new time), optionally to another doctor."""
    ends_at = slot_end(starts_at, minutes, now)  # the same checks as a booking
    async with db.transaction() as tx:
        row = await (await tx.execute(
            "SELECT doctor_id, patient_id, starts_at FROM appointments WHERE id = ?", (appointment_id,)
        )).fetchone()
        if row is None:
            raise BookingError("Нет такого приёма")
        doctor = doctor_id or row[0]
        if doctor != row[0] and not await (await tx.execute(
                "SELECT 1 FROM doctors WHERE id = ? AND active = 1", (doctor,))).fetchone():
            raise BookingError("Нет такого врача")
        await _refuse_clash(tx, doctor, starts_at, ends_at, moving=appointment_id)
        await tx.execute(
            "UPDATE appointments SET doctor_id = ?, starts_at = ?, ends_at = ?, starts_ts = ?, ends_ts = ?,"
            " status = 'unconfirmed', needs_reschedule = 0, updated_at = ? WHERE id = ?",
            (doctor, wall(starts_at), wall(ends_at), starts_at.timestamp(), ends_at.timestamp(), tx.stamp(),
             appointment_id),
        )
        await log_action(tx, "moved", now, row[1], appointment_id=appointment_id, user_id=user_id,
                         detail=f"{row[2]} -> {wall(starts_at)}")


async def set_status(db: Database, appointment_id: int, status: str, *,
                     needs_reschedule: bool | None = None, at: float | None = None,
                     user_id: int | None = None) -> str:
    """Change an appointment's status; returns the previous one. Unknown status -> ValueError."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    async with db.transaction() as tx:
        row = await (await tx.execute(
            "SELECT status, patient_id FROM appointments WHERE id = ?", (appointment_id,)
        )).fetchone()
        if row is None:
            raise BookingError("Нет такого приёма")
        if row[0] != status:
            await log_action(tx, "status", at, row[1], appointment_id=appointment_id, user_id=user_id,
                             detail=f"{row[0]} -> {status}")
        sets, params = ["status = ?", "updated_at = ?"], [status, tx.stamp()]
        if needs_reschedule is not None:
            sets.append("needs_reschedule = ?")
            params.append(int(needs_reschedule))
        await tx.execute(f"UPDATE appointments SET {', '.join(sets)} WHERE id = ?",
                         (*params, appointment_id))
        return str(row[0])


async def get_appointment(db: Database, appointment_id: int) -> dict[str, Any] | None:
    rows = await _appointments(db, "a.id = ?", (appointment_id,))
    return rows[0] if rows else None


async def day_appointments(db: Database, day: date, tz: ZoneInfo,
                           doctor_id: int | None = None) -> list[dict[str, Any]]:
    midnight = datetime.combine(day, time(0), tz)
    where = "a.starts_ts >= ? AND a.starts_ts < ?"
    params: list[Any] = [midnight.timestamp(), (midnight + timedelta(days=1)).timestamp()]
    if doctor_id:
        where += " AND a.doctor_id = ?"
        params.append(doctor_id)
    return await _appointments(db, where, params)


async def day_status_counts(db: Database, day: date, tz: ZoneInfo) -> dict[str, int]:
    """How many of the day's appointments are in each status (by label): the home page's figures."""
    midnight = datetime.combine(day, time(0), tz)
    rows = await db.fetch_tuples("SELECT status, COUNT(*) FROM appointments WHERE starts_ts >= ? AND starts_ts < ?"
                                 " GROUP BY status", (midnight.timestamp(), (midnight + timedelta(days=1)).timestamp()))
    counts = dict(rows)
    return {STATUSES.get(s, s): counts.pop(s) for s in [*STATUSES, *sorted(counts)] if s in counts}


async def last_guardian(db: Database, patient_id: int) -> int | None:
    """The guardian named on the ward's latest appointment that names one."""
    row = await db.fetchone("SELECT guardian_id FROM appointments WHERE patient_id = ? AND guardian_id IS NOT NULL"
                            " ORDER BY created_ts DESC, id DESC LIMIT 1", (patient_id,))
    return int(row[0]) if row else None


async def patient_appointments(db: Database, patient_id: int) -> list[dict[str, Any]]:
    return await _appointments(db, "a.patient_id = ?", (patient_id,), order="a.starts_ts DESC")


async def _appointments(db: Database, where: str, params: Any,
                        order: str = "a.starts_ts") -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT a.*, d.full_name AS doctor_name, d.specialty, p.last_name, p.first_name,"
        " p.middle_name, (SELECT ph.e164 FROM patient_phones ph WHERE ph.patient_id = p.id"
        " ORDER BY ph.kind = 'mobile' DESC, ph.id LIMIT 1) AS phone,"
        " (SELECT g.full_name FROM guardians g WHERE g.id = a.guardian_id) AS guardian_name,"
        " (SELECT cp.e164 FROM contact_phones cp WHERE cp.owner_kind = 'guardian' AND cp.owner_id = a.guardian_id"
        " ORDER BY cp.id LIMIT 1) AS guardian_phone"
        " FROM appointments a JOIN doctors d ON d.id = a.doctor_id"
        f" JOIN patients p ON p.id = a.patient_id WHERE {where} ORDER BY {order}",
        params,
    )
    out = []
    for r in rows:
        item = dict(r)
        item["patient_name"] = " ".join(x for x in (r["last_name"], r["first_name"], r["middle_name"]) if x)
        item["status_label"] = STATUSES.get(r["status"], r["status"])
        out.append(item)
    return out


async def add_waiting(db: Database, patient_id: int, specialty: str, note: str,
                      user_id: int | None, at: float | None = None) -> int:
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO waiting_list (patient_id, specialty, note, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (patient_id, specialty[:200], note[:1000], user_id, tx.stamp()),
        )
        await log_action(tx, "waiting_added", at, patient_id, user_id=user_id, detail=specialty[:200])
        return int(cur.lastrowid or 0)


# a list's patient (``p``): the name and the first number, to call from the list
PATIENT_AND_PHONE = ("p.last_name || ' ' || p.first_name || ' ' || p.middle_name AS patient_name,"
                     " (SELECT e164 FROM patient_phones ph WHERE ph.patient_id = p.id ORDER BY ph.id LIMIT 1) AS phone")


async def waiting(db: Database, specialty: str | None = None) -> list[dict[str, Any]]:
    where, params = "w.closed_at IS NULL", []
    if specialty:
        where += " AND (w.specialty = '' OR w.specialty = ?)"
        params.append(specialty)
    rows = await db.fetchall(
        f"SELECT w.*, {PATIENT_AND_PHONE} FROM waiting_list w JOIN patients p ON p.id = w.patient_id"
        f" WHERE {where} ORDER BY w.id", params)
    return [dict(r) for r in rows]


async def log_action(tx: Any, kind: str, at: float | None, patient_id: int | None, *,
                     appointment_id: int | None = None, task_id: int | None = None, user_id: int | None = None,
                     detail: str = "") -> None:
    """One line of the CRM's history (who, when, what), inside the change's own transaction."""
    await tx.execute(
        "INSERT INTO crm_actions (at_ts, kind, patient_id, appointment_id, task_id, user_id, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (time_now() if at is None else at, kind, patient_id, appointment_id, task_id, user_id, detail))


async def actions(db: Database, patient_ids: set[int], since: float, until: float) -> list[dict[str, Any]]:
    if not patient_ids:
        return []
    marks = ",".join("?" * len(patient_ids))
    rows = await db.fetchall(
        f"SELECT * FROM crm_actions WHERE patient_id IN ({marks}) AND at_ts >= ? AND at_ts < ? ORDER BY at_ts, id",
        (*sorted(patient_ids), since, until))
    return [dict(r) for r in rows]

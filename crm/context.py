"""The patient's context block (seed 001): what the administrator needs while talking,
without opening other forms. Read-only; "today" comes from the caller's clock."""

from __future__ import annotations

from datetime import date
from typing import Any

from crm import schedule, tasks
from crm.db import Database

ADULT_AGE = 18


def age_on(born: str | None, today: date) -> int | None:
    if not born:
        return None
    try:
        b = date.fromisoformat(born)
    except ValueError:
        return None
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


async def patient(db: Database, patient_id: int) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT * FROM patients WHERE id = ?", (patient_id,))
    if row is None:
        return None
    p = dict(row)
    p["full_name"] = " ".join(x for x in (p["last_name"], p["first_name"], p["middle_name"]) if x)
    p["phones"] = [dict(r) for r in await db.fetchall(
        "SELECT e164, kind FROM patient_phones WHERE patient_id = ? ORDER BY kind = 'mobile' DESC, id",
        (patient_id,),
    )]
    return p


async def context(db: Database, patient_id: int, *, today: date, now: float) -> dict[str, Any]:
    """Age and guardians, money, comments, appointment habits, future appointments, tasks."""
    p = await patient(db, patient_id)
    if p is None:
        raise KeyError(patient_id)
    age = age_on(p["birth_date"], today)
    guardians = [dict(r) for r in await db.fetchall(
        "SELECT g.id, g.full_name, gs.relation, (SELECT GROUP_CONCAT(cp.e164, ' ') FROM contact_phones cp"
        " WHERE cp.owner_kind = 'guardian' AND cp.owner_id = g.id) AS phones"
        " FROM guardianships gs JOIN guardians g ON g.id = gs.guardian_id WHERE gs.patient_id = ?"
        " ORDER BY g.id",
        (patient_id,),
    )]
    sums = await db.fetchone(
        "SELECT COALESCE(SUM(CASE WHEN payer = 'self' THEN price END), 0),"
        " COALESCE(SUM(CASE WHEN payer = 'insurance' THEN price END), 0)"
        " FROM appointments WHERE patient_id = ? AND status = 'completed'",
        (patient_id,),
    )
    family_sum = None
    if p["family_id"] is not None:
        row = await db.fetchone(
            "SELECT COALESCE(SUM(a.price), 0) FROM appointments a JOIN patients m ON m.id = a.patient_id"
            " WHERE m.family_id = ? AND a.status = 'completed'",
            (p["family_id"],),
        )
        family_sum = float(row[0]) if row else 0.0
    policies = [dict(r) for r in await db.fetchall(
        "SELECT company, number, valid_from, valid_to FROM insurance_policies"
        " WHERE patient_id = ? AND valid_from <= ? AND valid_to >= ? ORDER BY valid_to",
        (patient_id, today.isoformat(), today.isoformat()),
    )]
    habits = await db.fetchone(
        "SELECT COUNT(CASE WHEN status = 'completed' THEN 1 END),"
        " COUNT(CASE WHEN status IN ('completed', 'no_show', 'cancelled') THEN 1 END),"
        " MAX(CASE WHEN status = 'completed' THEN starts_at END)"
        " FROM appointments WHERE patient_id = ? AND starts_ts < ?",
        (patient_id, now),
    )
    done, past, last_visit = (habits[0] or 0, habits[1] or 0, habits[2]) if habits else (0, 0, None)
    future = [a for a in await schedule.patient_appointments(db, patient_id)
              if a["status"] in schedule.ACTIVE and a["starts_ts"] >= now]
    future.sort(key=lambda a: a["starts_ts"])
    return {
        "patient": p,
        "age": age,
        "child": age is not None and age < ADULT_AGE,
        "guardians": guardians,
        "balance": float(p["balance"]),
        "treatment_sum": float(sums[0]) if sums else 0.0,
        "insurance_sum": float(sums[1]) if sums else 0.0,
        "policies": policies,
        "family_sum": family_sum,
        "notes": p["notes"],
        "extra_notes": p["extra_notes"],
        "completed_share": round(100 * done / past) if past else None,
        "last_visit": last_visit,
        "future": future,
        "tasks": await tasks.open_tasks(db, patient_id),
        "waiting": [w for w in await schedule.waiting(db) if w["patient_id"] == patient_id],
    }

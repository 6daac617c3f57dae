"""The appointments of a clinic's MIS export, written batch by batch like its patients (see
``crm.mis_import``): upserted by the MIS's id, its patient and doctor found by theirs, the time
read in the branch's time zone. The MIS is where these were booked, so no clash check refuses
them; a future one gets its confirmation call planned like any other (the planner sees its
``updated_at``), and one whose creation time the file does not give is never taken for a booking
made today (issue #33)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from crm.db import Database
from crm.mis_import import Counts, record_batch
from crm.rules.mis_rows import Rejection, Row
from crm.schedule import wall

_COMPARED = ("patient_id", "doctor_id", "branch_id", "starts_ts", "ends_ts", "status", "comment", "price", "created_ts")


async def _by_external(tx: Any, table: str, columns: str, ids: set[str]) -> dict[str, tuple[Any, ...]]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await (await tx.execute(f"SELECT external_id, {columns} FROM {table} WHERE external_id IN ({marks})",
                                   list(ids))).fetchall()
    return {str(r[0]): tuple(r[1:]) for r in rows}


@lru_cache(maxsize=65536)
def _moment(naive: datetime, tz: ZoneInfo) -> tuple[str, float]:
    """A wall time in ``tz`` as stored: its text and epoch seconds. A schedule repeats the same
    times day after day: worked out once each (zone arithmetic is the import's costliest step
    after the phones)."""
    aware = naive.replace(tzinfo=tz)
    return wall(aware), aware.timestamp()


def _wanted(v: dict[str, Any], patient: int, doctor: int, branch: int | None, tz: ZoneInfo,
            current: dict[str, Any] | None) -> dict[str, Any]:
    starts_at, starts_ts = _moment(v["starts_at"], tz)
    ends_at, ends_ts = _moment(v["starts_at"] + timedelta(minutes=v["minutes"]), tz)
    created = v.get("created_at")
    keep = current or {"status": "unconfirmed", "comment": "", "price": 0.0, "created_ts": 0.0}
    return {
        "patient_id": patient, "doctor_id": doctor, "branch_id": branch,
        "starts_at": starts_at, "ends_at": ends_at, "starts_ts": starts_ts, "ends_ts": ends_ts,
        "status": v.get("status", keep["status"]), "comment": v.get("comment", keep["comment"]),
        "price": v.get("price", keep["price"]),
        "created_ts": _moment(created, tz)[1] if isinstance(created, datetime) else keep["created_ts"],
    }


async def apply_appointments(db: Database, run_id: int | None, rows: list[Row], refused: list[Rejection],
                             rows_done: int, dry_run: bool, default_tz: str) -> Counts:
    counts = Counts(rejected=len({r.line for r in refused}))
    async with db.transaction() as tx:
        patients = await _by_external(tx, "patients", "id", {r.values["patient_external_id"] for r in rows})
        doctors = await _by_external(tx, "doctors", "id, branch_id", {r.values["doctor_external_id"] for r in rows})
        existing = await _by_external(tx, "appointments", "id, " + ", ".join(_COMPARED),
                                      {r.values["external_id"] for r in rows})
        branches = {int(r[0]): (str(r[1]), str(r[2] or default_tz)) for r in await (await tx.execute(
            "SELECT id, name, time_zone FROM branches")).fetchall()}
        by_name = {name.lower(): bid for bid, (name, _) in branches.items()}
        zones = {name: ZoneInfo(name) for name in {default_tz, *(z for _, z in branches.values())}}
        inserts: dict[str, dict[str, Any]] = {}  # MIS id -> values
        updates: dict[int, dict[str, Any]] = {}  # appointment id -> values
        for row in rows:
            v = row.values
            problem = None
            if v["patient_external_id"] not in patients:
                problem = ("ID пациента в МИС", f"нет пациента с ID {v['patient_external_id'][:30]}"
                           " (сначала импортируйте пациентов)")
            elif v["doctor_external_id"] not in doctors:
                problem = ("ID врача в МИС", f"нет врача с ID {v['doctor_external_id'][:30]}"
                           " (сначала импортируйте врачей)")
            elif v.get("branch") and v["branch"].lower() not in by_name:
                problem = ("Филиал", f"нет филиала «{v['branch'][:40]}»")
            if problem:
                refused.append(Rejection(row.line, *problem))
                counts.rejected += 1
                continue
            doctor_id, doctor_branch = doctors[v["doctor_external_id"]]
            branch = by_name[v["branch"].lower()] if v.get("branch") else doctor_branch
            tz = zones[branches[branch][1] if branch in branches else default_tz]
            found = existing.get(v["external_id"])
            current = dict(zip(_COMPARED, found[1:], strict=True)) if found else None
            wanted = _wanted(v, int(patients[v["patient_external_id"]][0]), int(doctor_id), branch, tz, current)
            if found is None:
                counts.inserted += 1
                inserts[v["external_id"]] = wanted
                existing[v["external_id"]] = (None, *(wanted[k] for k in _COMPARED))
            elif any(wanted[k] != current[k] for k in _COMPARED):  # type: ignore[index]
                counts.updated += 1
                if found[0] is None:  # the same id earlier in this batch: still to be inserted
                    inserts[v["external_id"]] = wanted
                else:
                    updates[found[0]] = wanted
                existing[v["external_id"]] = (found[0], *(wanted[k] for k in _COMPARED))
            else:
                counts.unchanged += 1
        if not dry_run:
            await _write(tx, inserts, updates)
        await record_batch(tx, run_id, rows_done, counts, refused)
    return counts


async def _write(tx: Any, inserts: dict[str, dict[str, Any]], updates: dict[int, dict[str, Any]]) -> None:
    """The batch's changes, one statement each (a round trip per row held the writer ~1 s per
    thousand rows)."""
    stamp = tx.stamp()
    await tx.executemany(
        "INSERT INTO appointments (patient_id, doctor_id, branch_id, starts_at, ends_at, starts_ts, ends_ts,"
        " status, comment, price, created_ts, source, external_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'import', ?, ?, ?)",
        [(*wanted.values(), ext, stamp, stamp) for ext, wanted in inserts.items()])
    await tx.executemany(
        "UPDATE appointments SET patient_id = ?, doctor_id = ?, branch_id = ?, starts_at = ?, ends_at = ?,"
        " starts_ts = ?, ends_ts = ?, status = ?, comment = ?, price = ?, created_ts = ?, updated_at = ?"
        " WHERE id = ?", [(*wanted.values(), stamp, aid) for aid, wanted in updates.items()])

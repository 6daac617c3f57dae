"""The sync API's writes (issue #33): a clinic that keeps its MIS upserts patients and
appointments by the MIS's id, one or a batch at a time. A JSON item becomes the row an import
file would have given (``json_row``), so a field means the same in a file and in a call, and is
written by the import's own writers, each item in its own transaction. An item refused for any
field writes nothing; the others of a batch go in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from crm import mis_import
from crm.db import Database
from crm.mis_appointments import apply_appointments
from crm.mis_import import Counts
from crm.rules.mis_fields import FIELDS
from crm.rules.mis_rows import Rejection, Row, parse_row

BATCH_MAX = 1000
# the JSON's names for the import's fields: a patient's numbers come as one list
_JSON_NAME = {"phone": "phones"}


def json_fields(kind: str) -> list[str]:
    return [_JSON_NAME.get(f.name, f.name) for f in FIELDS[kind] if f.name != "external_id"]


@dataclass
class ItemResult:
    external_id: str
    result: str = "refused"  # created | updated | unchanged | refused
    id: int | None = None
    errors: list[dict[str, str | None]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"external_id": self.external_id, "result": self.result, "id": self.id}
        if self.errors:
            out["errors"] = self.errors
        return out


def _cell(value: Any) -> str | None:
    """A JSON value as an import cell: strings and numbers only (None when it is neither)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def json_row(kind: str, external_id: str, body: Any, today: date, line: int = 1) -> Row | list[dict[str, str | None]]:
    """The item as the import's row, or its field errors (``field`` None: the item as a whole).
    Fields the item leaves out are left as they are; ``null`` or ``""`` clears one."""
    if not isinstance(body, dict):
        return [{"field": None, "reason": "ожидается объект JSON"}]
    known = json_fields(kind)
    labels = {f.label: _JSON_NAME.get(f.name, f.name) for f in FIELDS[kind]}
    mapping, cells, errors = ["external_id"], [external_id], []
    for key, value in body.items():
        if key == "external_id":
            if _cell(value) != external_id:
                errors.append({"field": key, "reason": "не совпадает с ID в адресе"})
            continue
        if key not in known:
            errors.append({"field": str(key)[:40], "reason": "неизвестное поле"})
            continue
        values = value if key == "phones" and isinstance(value, list) else [value]
        if len(values) > 10:
            errors.append({"field": key, "reason": "не больше 10 номеров"})
            continue
        for one in values or [""]:
            text = _cell(one)
            if text is None:
                errors.append({"field": key, "reason": "ожидается строка или число"})
                break
            mapping.append("phone" if key == "phones" else key)
            cells.append(text)
    if errors:
        return errors
    parsed = parse_row(kind, mapping, cells, line, today)
    if isinstance(parsed, Row):
        return parsed
    return [{"field": labels.get(r.column), "reason": r.reason} for r in parsed]


def _errors(refused: list[Rejection], kind: str) -> list[dict[str, str | None]]:
    labels = {f.label: _JSON_NAME.get(f.name, f.name) for f in FIELDS[kind]}
    return [{"field": labels.get(r.column, r.column or None), "reason": r.reason} for r in refused]


def _outcome(counts: Counts) -> str:
    return "created" if counts.inserted else "updated" if counts.updated else "unchanged"


def _parse_all(kind: str, items: list[tuple[str, Any]], today: date) -> tuple[list[ItemResult], list[Row | None]]:
    results, rows, seen = [], [], set()
    for line, (external_id, body) in enumerate(items, start=1):
        result = ItemResult(external_id)
        parsed = json_row(kind, external_id, body, today, line)
        if external_id in seen:
            parsed = [{"field": "external_id", "reason": "повторяется в пакете"}]
        seen.add(external_id)
        if isinstance(parsed, list):
            result.errors = parsed
            rows.append(None)
        else:
            rows.append(parsed)
        results.append(result)
    return results, rows


async def _ids(db: Database, table: str, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    found = await db.fetchall(f"SELECT external_id, id FROM {table} WHERE external_id IN ({','.join('?' * len(ids))})",
                              ids)
    return {str(r[0]): int(r[1]) for r in found}


async def _with_known_names(db: Database, items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """An item that changes a known patient without naming them (only the numbers, say) keeps
    the card's name: a row must have one."""
    names_given = {"last_name", "first_name", "full_name"}
    unnamed = {ext for ext, body in items if isinstance(body, dict) and not names_given & body.keys()}
    if not unnamed:
        return items
    names = {str(r[0]): (r[1], r[2]) for r in await db.fetchall(
        f"SELECT external_id, last_name, first_name FROM patients WHERE external_id IN ({','.join('?' * len(unnamed))})",
        sorted(unnamed))}
    return [(ext, {"last_name": names[ext][0], "first_name": names[ext][1], **body}
             if ext in unnamed and ext in names else body) for ext, body in items]


async def sync_patients(db: Database, items: list[tuple[str, Any]], today: date) -> list[ItemResult]:
    results, rows = _parse_all("patients", await _with_known_names(db, items), today)
    ok = [r for r in rows if r is not None]
    links = [(r.line, r.values["external_id"], r.values["guardian_external_id"]) for r in ok
             if r.values.get("guardian_external_id")]
    if links:  # a representative unknown or a cycle refuses the item before anything is written
        for refused in await mis_import.link_guardians(db, links, True, {r.values["external_id"] for r in ok}):
            results[refused.line - 1].errors = [{"field": "guardian_external_id", "reason": refused.reason}]
            rows[refused.line - 1] = None
    adopt = await mis_import.adoptable(db, [r for r in rows if r is not None])
    for result, row in zip(results, rows, strict=True):
        if row is not None:
            result.result = _outcome(await mis_import.apply_patients(db, None, [row], [], 0, False, adopt))
    linked = [link for link in links if rows[link[0] - 1] is not None]
    if linked:
        await mis_import.link_guardians(db, linked, False, set())
    ids = await _ids(db, "patients", [r.external_id for r in results if r.result != "refused"])
    for r in results:
        r.id = ids.get(r.external_id)
    return results


async def _with_known_visit(db: Database, items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A known appointment changed in part (its status, say) keeps its patient, doctor, time and
    length: a row must have them."""
    ids = [ext for ext, body in items if isinstance(body, dict)]
    if not ids:
        return items
    known = {str(r[0]): r for r in await db.fetchall(
        "SELECT a.external_id, p.external_id, d.external_id, a.starts_at, a.starts_ts, a.ends_ts FROM appointments a"
        " JOIN patients p ON p.id = a.patient_id JOIN doctors d ON d.id = a.doctor_id"
        f" WHERE a.external_id IN ({','.join('?' * len(ids))})", ids)}
    out = []
    for ext, body in items:
        r = known.get(ext)
        if r is not None and isinstance(body, dict):
            stored: dict[str, Any] = {"patient_external_id": r[1], "doctor_external_id": r[2]}
            if not {"starts_at", "date", "time"} & body.keys():
                stored["starts_at"] = r[3]
                if not {"minutes", "ends_at"} & body.keys():
                    stored["minutes"] = round((float(r[5]) - float(r[4])) / 60)
            body = {**{k: v for k, v in stored.items() if k not in body}, **body}
        out.append((ext, body))
    return out


async def sync_appointments(db: Database, items: list[tuple[str, Any]], today: date,
                            time_zone: str) -> list[ItemResult]:
    results, rows = _parse_all("appointments", await _with_known_visit(db, items), today)
    for result, row in zip(results, rows, strict=True):
        if row is None:
            continue
        refused: list[Rejection] = []
        counts = await apply_appointments(db, None, [row], refused, 0, False, time_zone)
        if refused:
            result.errors = _errors(refused, "appointments")
        else:
            result.result = _outcome(counts)
    ids = await _ids(db, "appointments", [r.external_id for r in results if r.result != "refused"])
    for r in results:
        r.id = ids.get(r.external_id)
    return results


async def patient_json(db: Database, external_id: str) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT id, last_name, first_name, middle_name, birth_date, sex, email, notes"
                            " FROM patients WHERE external_id = ?", (external_id,))
    if row is None:
        return None
    numbers = await db.fetchall("SELECT e164 FROM patient_phones WHERE patient_id = ? ORDER BY id", (row[0],))
    guardian = await db.fetchone(
        "SELECT pg.external_id FROM guardianships gs JOIN guardians g ON g.id = gs.guardian_id"
        " JOIN patients pg ON pg.id = g.patient_id WHERE gs.patient_id = ? AND pg.external_id IS NOT NULL"
        " ORDER BY g.id LIMIT 1", (row[0],))
    return {"external_id": external_id, "id": int(row[0]), "last_name": row[1], "first_name": row[2],
            "middle_name": row[3], "birth_date": row[4], "sex": row[5] or "", "email": row[6] or "",
            "notes": row[7] or "", "phones": [str(n[0]) for n in numbers],
            "guardian_external_id": str(guardian[0]) if guardian else None}


async def appointment_json(db: Database, external_id: str) -> dict[str, Any] | None:
    row = await db.fetchone(
        "SELECT a.id, p.external_id, d.external_id, a.starts_at, a.ends_at, a.status, b.name, a.comment, a.price,"
        " a.source FROM appointments a JOIN patients p ON p.id = a.patient_id JOIN doctors d ON d.id = a.doctor_id"
        " LEFT JOIN branches b ON b.id = a.branch_id WHERE a.external_id = ?", (external_id,))
    if row is None:
        return None
    return {"external_id": external_id, "id": int(row[0]), "patient_external_id": row[1], "doctor_external_id": row[2],
            "starts_at": row[3], "ends_at": row[4], "status": row[5], "branch": row[6] or "", "comment": row[7] or "",
            "price": float(row[8] or 0), "source": row[9]}

"""Who is calling? One patient, several patients, a guardian with wards, an employee, a
contractor, or nobody we know. Employees' and contractors' calls are typed automatically and
kept out of patient statistics (seed 001)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crm.db import Database
from crm.patients import PatientRef

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

PATIENT, PATIENTS, GUARDIAN, EMPLOYEE, CONTRACTOR, UNKNOWN = (
    "patient", "patients", "guardian", "employee", "contractor", "unknown",
)
NOT_PATIENT_KINDS = frozenset({EMPLOYEE, CONTRACTOR})


@dataclass(frozen=True)
class Identity:
    kind: str
    e164: str | None
    display: str = ""  # what the desk phone's display and the card show
    patient_id: int | None = None
    candidates: tuple[PatientRef, ...] = field(default_factory=tuple)
    counterpart_id: int | None = None  # employee / contractor / guardian id
    counterpart_name: str = ""

    @property
    def counts_for_stats(self) -> bool:
        return self.kind not in NOT_PATIENT_KINDS


def short_name(full_name: str) -> str:
    """"Иванова Мария Петровна" -> "Иванова М. П." (a desk phone display is narrow)."""
    parts = full_name.split()
    if len(parts) < 2:
        return full_name
    return parts[0] + " " + " ".join(p[0] + "." for p in parts[1:])


def identify(db: Database, e164: str | None) -> Identity:
    """Point lookups by the indexed E.164 number, run inline (FastAGI's hot path)."""
    return identify_in(db.query_now, e164)


def identify_in(query: Query, e164: str | None) -> Identity:
    """The lookups through any query function: ``Database.query_now`` inline, or a
    ``Reader.fetch_tuples`` on the reading thread (the live cards, off the AMI path)."""
    if not e164:
        return Identity(UNKNOWN, None)
    owners = query(
        "SELECT owner_kind, owner_id FROM contact_phones WHERE e164 = ? ORDER BY owner_kind, owner_id",
        (e164,),
    )
    by_kind: dict[str, list[int]] = {}
    for row in owners:
        by_kind.setdefault(row[0], []).append(int(row[1]))
    if EMPLOYEE in by_kind:
        emp = next(iter(query(
            "SELECT id, full_name FROM employees WHERE id = ?", (by_kind[EMPLOYEE][0],)
        )), None)
        if emp is not None:
            return Identity(EMPLOYEE, e164, f"Сотрудник: {short_name(emp[1])}",
                            counterpart_id=emp[0], counterpart_name=emp[1])
    if CONTRACTOR in by_kind:
        con = next(iter(query(
            "SELECT id, name FROM contractors WHERE id = ?", (by_kind[CONTRACTOR][0],)
        )), None)
        if con is not None:
            return Identity(CONTRACTOR, e164, f"Контрагент: {con[1]}",
                            counterpart_id=con[0], counterpart_name=con[1])
    own = query(
        "SELECT p.id, p.last_name, p.first_name, p.middle_name, p.birth_date"
        " FROM patient_phones ph JOIN patients p ON p.id = ph.patient_id"
        " WHERE ph.e164 = ? ORDER BY p.id",
        (e164,),
    )
    candidates = [PatientRef(r[0], r[1], r[2], r[3], r[4]) for r in own]
    guardian_ids = by_kind.get(GUARDIAN, [])
    guardian_name = ""
    if guardian_ids:
        marks = ",".join("?" * len(guardian_ids))
        wards = query(
            "SELECT DISTINCT p.id, p.last_name, p.first_name, p.middle_name, p.birth_date"
            f" FROM guardianships g JOIN patients p ON p.id = g.patient_id WHERE g.guardian_id IN ({marks})"
            " ORDER BY p.id",
            guardian_ids,
        )
        known = {c.id for c in candidates}
        candidates += [PatientRef(r[0], r[1], r[2], r[3], r[4]) for r in wards if r[0] not in known]
        g = query("SELECT full_name FROM guardians WHERE id = ?", (guardian_ids[0],))
        guardian_name = g[0][0] if g else ""
        return Identity(GUARDIAN, e164, f"Пациенты: {len(candidates)}", None, tuple(candidates),
                        guardian_ids[0], guardian_name)
    if len(candidates) == 1:
        return Identity(PATIENT, e164, candidates[0].full_name, candidates[0].id, tuple(candidates))
    if len(candidates) > 1:
        return Identity(PATIENTS, e164, f"Пациенты: {len(candidates)}", None, tuple(candidates))
    return Identity(UNKNOWN, e164)

"""Patients and their phones."""

from __future__ import annotations

from dataclasses import dataclass

from crm import phones
from crm.db import Database


@dataclass(frozen=True, slots=True)
class PatientRef:
    id: int
    last_name: str
    first_name: str
    middle_name: str
    birth_date: str | None

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.last_name, self.first_name, self.middle_name) if p)


async def add_patient(
    db: Database,
    last_name: str,
    first_name: str,
    middle_name: str = "",
    *,
    birth_date: str | None = None,
    phone_numbers: tuple[str, ...] = (),
    consent_pd: bool = True,
) -> int:
    """Create a patient with phones in one transaction; an unusable number is an error."""
    normalized = []
    for raw in phone_numbers:
        phones.refuse_extension(raw)
        e164 = phones.normalize(raw)
        if e164 is None:
            raise ValueError(f"not a phone number: {raw!r}")
        normalized.append(e164)
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO patients (last_name, first_name, middle_name, birth_date, consent_pd,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (last_name, first_name, middle_name, birth_date, int(consent_pd), tx.stamp()),
        )
        pid = int(cur.lastrowid or 0)
        for e164 in normalized:
            await tx.execute(
                "INSERT OR IGNORE INTO patient_phones (patient_id, e164, kind) VALUES (?, ?, ?)",
                (pid, e164, phones.kind(e164)),
            )
    return pid


async def find_by_phone(db: Database, e164: str) -> list[PatientRef]:
    rows = await db.fetchall(
        "SELECT p.id, p.last_name, p.first_name, p.middle_name, p.birth_date"
        " FROM patient_phones ph JOIN patients p ON p.id = ph.patient_id"
        " WHERE ph.e164 = ? ORDER BY p.id",
        (e164,),
    )
    return [PatientRef(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def count(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) FROM patients")
    return int(row[0]) if row else 0


async def exists(db: Database, patient_id: int) -> bool:
    return await db.fetchone("SELECT 1 FROM patients WHERE id = ?", (patient_id,)) is not None


async def search(db: Database, q: str, limit: int = 50) -> list[dict[str, object]]:
    """Patients whose number contains the digits typed, or whose full name contains the words
    typed (the patients page); nothing for an empty or too short query."""
    clause = phones.search_clause(
        q, "p.id IN (SELECT patient_id FROM patient_phones WHERE e164 LIKE ?)",
        "(p.last_name || ' ' || p.first_name || ' ' || p.middle_name) LIKE ?",
    )
    if not clause:
        return []
    return await _cards(db, f"{clause[0]} ORDER BY p.last_name, p.first_name LIMIT ?", [*clause[1], limit])


async def _cards(db: Database, where: str, params: list[object]) -> list[dict[str, object]]:
    """Patients as the list shows them: names, birth date, their numbers."""
    rows = await db.fetchall(
        "SELECT p.id, p.last_name, p.first_name, p.middle_name, p.birth_date,"
        " (SELECT GROUP_CONCAT(e164, ' ') FROM patient_phones WHERE patient_id = p.id) AS phones"
        f" FROM patients p WHERE {where}", params)
    return [dict(r) for r in rows]


async def recent(db: Database, limit: int = 20) -> list[dict[str, object]]:
    """The patients page before a search: those in the latest calls (newest first), then the
    newest cards. Bounded reads: the latest calls by the start index, never the whole table."""
    ids: list[int] = []
    for r in await db.fetchall("SELECT patient_id FROM calls WHERE patient_id IS NOT NULL"
                               " ORDER BY started_ts DESC LIMIT ?", (limit * 10,)):
        if r[0] not in ids:
            ids.append(r[0])
    if len(ids) < limit:
        for r in await db.fetchall("SELECT id FROM patients ORDER BY id DESC LIMIT ?", (limit * 2,)):
            if r[0] not in ids:
                ids.append(r[0])
    ids = ids[:limit]
    if not ids:
        return []
    rows = {r["id"]: r for r in await _cards(db, f"p.id IN ({','.join('?' * len(ids))})", list(ids))}
    return [rows[i] for i in ids if i in rows]


PHONE_KINDS = {"mobile": "мобильный", "landline": "стационарный", "foreign": "иностранный"}


@dataclass(frozen=True)
class PatientEdit:
    """What the card's edit form changes. ``phones`` in order, the first is the main one."""

    last_name: str
    first_name: str
    middle_name: str = ""
    birth_date: str | None = None
    phones: tuple[tuple[str, str], ...] = ()  # (number as typed, kind)
    consent_pd: bool = False
    notify_opt_out: bool = False
    push_enabled: bool = False
    notes: str = ""
    extra_notes: str = ""


async def get_for_edit(db: Database, patient_id: int) -> dict[str, object] | None:
    row = await db.fetchone(
        "SELECT id, last_name, first_name, middle_name, birth_date, consent_pd, notify_opt_out, push_enabled,"
        " notes, extra_notes FROM patients WHERE id = ?", (patient_id,))
    if row is None:
        return None
    phones_rows = await db.fetchall("SELECT e164, kind FROM patient_phones WHERE patient_id = ? ORDER BY id",
                                    (patient_id,))
    return dict(row) | {"phones": [dict(r) for r in phones_rows]}


async def update_patient(db: Database, patient_id: int, edit: PatientEdit) -> None:
    """Change a card in one transaction (names, birth date, phones with their kind, consent,
    notification flags, comments); a ValueError says what is wrong, nothing is written then."""
    if not edit.last_name.strip() or not edit.first_name.strip():
        raise ValueError("Введите фамилию и имя")
    numbers: list[tuple[str, str]] = []
    for raw, kind in edit.phones:
        if not raw.strip():
            continue
        phones.refuse_extension(raw)
        e164 = phones.normalize(raw)
        if e164 is None:
            raise ValueError(f"Неверный номер телефона: {raw[:30]}")
        if kind not in PHONE_KINDS:
            kind = phones.kind(e164)
        if e164 not in [n for n, _ in numbers]:
            numbers.append((e164, kind))
    async with db.transaction() as tx:
        cur = await tx.execute(
            "UPDATE patients SET last_name = ?, first_name = ?, middle_name = ?, birth_date = ?, consent_pd = ?,"
            " notify_opt_out = ?, push_enabled = ?, notes = ?, extra_notes = ? WHERE id = ?",
            (edit.last_name.strip()[:60], edit.first_name.strip()[:60], edit.middle_name.strip()[:60],
             edit.birth_date, int(edit.consent_pd), int(edit.notify_opt_out), int(edit.push_enabled),
             edit.notes.strip()[:2000], edit.extra_notes.strip()[:2000], patient_id))
        if cur.rowcount == 0:
            raise ValueError("Нет такого пациента")
        # the phones in the order given (ids follow it): the first stays the main one
        await tx.execute("DELETE FROM patient_phones WHERE patient_id = ?", (patient_id,))
        for e164, kind in numbers:
            await tx.execute("INSERT INTO patient_phones (patient_id, e164, kind) VALUES (?, ?, ?)",
                             (patient_id, e164, kind))


async def guardians_of(db: Database, patient_id: int) -> list[dict[str, object]]:
    rows = await db.fetchall(
        "SELECT g.id, g.full_name, gs.relation, (SELECT GROUP_CONCAT(cp.e164, ' ') FROM contact_phones cp"
        " WHERE cp.owner_kind = 'guardian' AND cp.owner_id = g.id) AS phones"
        " FROM guardianships gs JOIN guardians g ON g.id = gs.guardian_id WHERE gs.patient_id = ? ORDER BY g.id",
        (patient_id,))
    return [dict(r) for r in rows]


async def add_guardian(db: Database, patient_id: int, full_name: str, phone: str, relation: str = "") -> int:
    """A guardian for a patient (a child's parent, the guardian of an adult): the one already
    known by that number is reused, so a mother of two is one guardian with two wards."""
    full_name = " ".join(full_name.split())[:100]
    phones.refuse_extension(phone)
    e164 = phones.normalize(phone) if phone.strip() else None
    if not full_name:
        raise ValueError("Введите ФИО опекуна")
    if phone.strip() and e164 is None:
        raise ValueError("Неверный номер телефона опекуна")
    async with db.transaction() as tx:
        if not await (await tx.execute("SELECT 1 FROM patients WHERE id = ?", (patient_id,))).fetchone():
            raise ValueError("Нет такого пациента")
        row = None
        if e164:
            row = await (await tx.execute(
                "SELECT owner_id FROM contact_phones WHERE e164 = ? AND owner_kind = 'guardian' ORDER BY id LIMIT 1",
                (e164,))).fetchone()
        if row is not None:
            gid = int(row[0])
        else:
            gid = int((await tx.execute("INSERT INTO guardians (full_name) VALUES (?)", (full_name,))).lastrowid or 0)
            if e164:
                await tx.execute("INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES (?, 'guardian', ?)",
                                 (e164, gid))
        await tx.execute("INSERT OR IGNORE INTO guardianships (guardian_id, patient_id, relation) VALUES (?, ?, ?)",
                         (gid, patient_id, " ".join(relation.split())[:40]))
    return gid


async def remove_guardian(db: Database, patient_id: int, guardian_id: int) -> None:
    """The guardianship ends; the guardian stays for their other wards (and the history)."""
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM guardianships WHERE guardian_id = ? AND patient_id = ?", (guardian_id, patient_id))

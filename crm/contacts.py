"""Employees and contractors (seed 001): their numbers, so their calls are typed automatically
and stay out of the patient statistics."""

from __future__ import annotations

from typing import Any

from crm import phones
from crm.db import Database

KINDS = {"employee": "Сотрудник", "contractor": "Контрагент"}


async def listing(db: Database) -> list[dict[str, Any]]:
    """Every employee and contractor with their numbers, by kind then name."""
    rows = await db.fetchall(
        "SELECT 'employee' AS kind, e.id, e.full_name AS name, e.position AS detail,"
        " (SELECT GROUP_CONCAT(cp.e164, ' ') FROM contact_phones cp WHERE cp.owner_kind = 'employee'"
        " AND cp.owner_id = e.id) AS phones FROM employees e WHERE e.active = 1"
        " UNION ALL SELECT 'contractor', c.id, c.name, c.notes,"
        " (SELECT GROUP_CONCAT(cp.e164, ' ') FROM contact_phones cp WHERE cp.owner_kind = 'contractor'"
        " AND cp.owner_id = c.id) FROM contractors c ORDER BY 1 DESC, 3")
    return [dict(r) | {"phones": (r["phones"] or "").split()} for r in rows]


async def add(db: Database, kind: str, name: str, phone: str, detail: str = "") -> int:
    if kind not in KINDS:
        raise ValueError("Выберите: сотрудник или контрагент")
    name = " ".join(name.split())[:100]
    if not name:
        raise ValueError("Введите имя или название")
    phones.refuse_extension(phone)
    e164 = phones.normalize(phone) if phone.strip() else None
    if phone.strip() and e164 is None:
        raise ValueError("Неверный номер телефона")
    async with db.transaction() as tx:
        if kind == "employee":
            cur = await tx.execute("INSERT INTO employees (full_name, position) VALUES (?, ?)", (name, detail[:100]))
        else:
            cur = await tx.execute("INSERT INTO contractors (name, notes) VALUES (?, ?)", (name, detail[:500]))
        owner = int(cur.lastrowid or 0)
        if e164:
            await tx.execute("INSERT OR IGNORE INTO contact_phones (e164, owner_kind, owner_id) VALUES (?, ?, ?)",
                             (e164, kind, owner))
    return owner


async def add_phone(db: Database, kind: str, owner: int, phone: str) -> None:
    phones.refuse_extension(phone)
    e164 = phones.normalize(phone)
    if kind not in KINDS or e164 is None:
        raise ValueError("Неверный номер телефона")
    table = "employees" if kind == "employee" else "contractors"
    async with db.transaction() as tx:
        if not await (await tx.execute(f"SELECT 1 FROM {table} WHERE id = ?", (owner,))).fetchone():
            raise ValueError("Нет такой записи")
        await tx.execute("INSERT OR IGNORE INTO contact_phones (e164, owner_kind, owner_id) VALUES (?, ?, ?)",
                         (e164, kind, owner))


async def remove_phone(db: Database, kind: str, owner: int, e164: str) -> None:
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM contact_phones WHERE e164 = ? AND owner_kind = ? AND owner_id = ?",
                         (e164, kind, owner))


async def typed_by_hand(tx: Any, linkedid: str, caller_type: str, contractor_name: str = "") -> None:
    """Seed 001: a caller typed by hand as «Сотрудник» or «Прочие и контрагенты» leaves the
    patient statistics at once; an unknown number typed as a contractor is remembered, so the
    next call from it is typed automatically. Inside the comment's transaction."""
    if caller_type.startswith("group:"):  # a clinic's own group that is not about patients
        row = await (await tx.execute("SELECT counts_for_stats FROM caller_groups WHERE id = ?",
                                      (caller_type.partition(":")[2],))).fetchone()
        if row is not None and not row[0]:
            await tx.execute("UPDATE calls SET counts_for_stats = 0 WHERE linkedid = ?", (linkedid,))
        return
    if caller_type not in ("employee", "other"):
        return
    row = await (await tx.execute("SELECT phone_e164, caller_kind FROM calls WHERE linkedid = ?",
                                  (linkedid,))).fetchone()
    if row is None:
        return
    await tx.execute("UPDATE calls SET counts_for_stats = 0 WHERE linkedid = ?", (linkedid,))
    e164, kind = row[0], row[1]
    if caller_type == "other" and e164 and kind in ("unknown", ""):
        known = await (await tx.execute("SELECT 1 FROM contact_phones WHERE e164 = ?", (e164,))).fetchone()
        if not known:
            cur = await tx.execute("INSERT INTO contractors (name, notes) VALUES (?, ?)",
                                   ((" ".join(contractor_name.split()) or f"Контрагент {e164}")[:100],
                                    "добавлен из комментария к звонку"))
            await tx.execute("INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES (?, 'contractor', ?)",
                             (e164, int(cur.lastrowid or 0)))

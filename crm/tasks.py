"""Tasks of the CRM (a call to make, a thing to check): added, moved to another day, done; each
change written to the CRM's history (``crm_actions``) in its own transaction."""

from __future__ import annotations

from datetime import date
from typing import Any

from crm.db import Database
from crm.schedule import PATIENT_AND_PHONE, BookingError, log_action


async def add_task(db: Database, patient_id: int | None, title: str, due: date,
                   user_id: int | None) -> int:
    if not title.strip():
        raise BookingError("Опишите задачу")
    async with db.transaction() as tx:
        return await insert_task(tx, patient_id, title, due, user_id)


async def insert_task(tx: Any, patient_id: int | None, title: str, due: date, user_id: int | None) -> int:
    """A task, inside the caller's transaction (a step of a larger change)."""
    cur = await tx.execute(
        "INSERT INTO tasks (patient_id, title, due_date, created_by, created_at) VALUES (?, ?, ?, ?, ?)",
        (patient_id, title.strip()[:500], due.isoformat(), user_id, tx.stamp()),
    )
    return int(cur.lastrowid or 0)


async def move_task(db: Database, task_id: int, due: date, *, at: float | None = None,
                    user_id: int | None = None) -> bool:
    """An open task to another day (seed 004: «переносит… задачу» types the call before it).
    False when there is no such open task; the same day again changes nothing."""
    async with db.transaction() as tx:
        row = await (await tx.execute("SELECT patient_id, title, due_date FROM tasks WHERE id = ? AND done_at IS NULL",
                                      (task_id,))).fetchone()
        if row is None:
            return False
        if row[2] != due.isoformat():
            await tx.execute("UPDATE tasks SET due_date = ? WHERE id = ?", (due.isoformat(), task_id))
            await log_action(tx, "task_moved", at, row[0], task_id=task_id, user_id=user_id,
                             detail=f"{row[1][:200]}: {row[2]} -> {due.isoformat()}")
        return True


async def complete_task(db: Database, task_id: int, *, at: float | None = None, user_id: int | None = None) -> None:
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE tasks SET done_at = ? WHERE id = ? AND done_at IS NULL RETURNING patient_id,"
                               " title", (tx.stamp(), task_id))
        row = await cur.fetchone()
        if row is not None:
            await log_action(tx, "task_done", at, row[0], task_id=task_id, user_id=user_id, detail=row[1][:200])


async def open_tasks(db: Database, patient_id: int | None = None) -> list[dict[str, Any]]:
    where, params = "t.done_at IS NULL", []
    if patient_id is not None:
        where += " AND t.patient_id = ?"
        params.append(patient_id)
    rows = await db.fetchall(
        f"SELECT t.*, {PATIENT_AND_PHONE} FROM tasks t LEFT JOIN patients p ON p.id = t.patient_id"
        f" WHERE {where} ORDER BY t.due_date, t.id", params)
    return [dict(r) for r in rows]

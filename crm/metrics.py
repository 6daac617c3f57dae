"""The figures /metrics reads from the CRM: robot attempts by outcome (both robots), messages and
letters waiting, open callback requests, how late the oldest due job is. Reads only."""

from __future__ import annotations

from crm.db import Database


async def robot_outcomes(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT CASE WHEN outcome = '' THEN 'in_progress' ELSE outcome END, COUNT(*)"
                             " FROM robot_calls GROUP BY 1")
    return {str(r[0]): int(r[1]) for r in rows}


async def outbox_depth(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) FROM outbox WHERE state IN ('queued', 'sending')")
    return int(row[0]) if row else 0


async def oldest_due_job(db: Database, now: float) -> float | None:
    """The due time of the oldest job still waiting to run (None: none is due)."""
    row = await db.fetchone("SELECT MIN(due_ts) FROM jobs WHERE state = 'pending' AND due_ts <= ?", (now,))
    return float(row[0]) if row and row[0] is not None else None


async def callback_outcomes(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT CASE WHEN outcome = '' THEN 'in_progress' ELSE outcome END, COUNT(*)"
                             " FROM callback_attempts GROUP BY 1")
    return {str(r[0]): int(r[1]) for r in rows}


async def callback_open(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) FROM callback_requests WHERE state = 'open'")
    return int(row[0]) if row else 0


async def mail_depth(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) FROM mail_outbox WHERE state IN ('queued', 'sending')")
    return int(row[0]) if row else 0

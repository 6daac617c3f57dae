"""The job table's storage, the same for every kind (``escort``, ``callback``): claim the due
jobs of a kind, release one for later, finish one, and after a restart put back what was left
running. The loop that runs passes and each kind's handler live in ``pbx/jobs/``; only this
module (and each kind's own storage for its subject) writes the ``jobs`` table."""

from __future__ import annotations

from typing import Any

from crm.claim import claim_rows
from crm.db import Database


def job_columns(prefix: str = "") -> str:
    """A job row: its subject, and as the escort reads it (the subject is an appointment)."""
    names = ("id", "job_key", "kind", "scenario", "subject_id", "subject_ts", "subject_id AS appointment_id", "subject_ts AS starts_ts",
             "due_ts", "state", "step", "mode", "attempts", "forced", "manual", "outcome", "reason",
             "created_at", "updated_at")
    return ", ".join(prefix + n for n in names)


async def claim_jobs(db: Database, kind: str, now: float, limit: int, where: str = "",
                     params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """The job table's one claim: due jobs of a kind go pending -> running in one transaction,
    so a job runs once at a time, whichever process claims (a chain's branches share the jobs:
    on PostgreSQL the rows another claim holds are skipped, see ``crm.claim``). An escort job
    shows its subject as ``appointment_id`` and ``starts_ts``."""
    async with db.transaction() as tx:
        return await claim_rows(tx, "jobs", f"kind = ? AND state = 'pending' AND due_ts <= ?{where}", "due_ts, id",
                                (kind, now, *params), limit, "state = 'running', updated_at = ?", (tx.stamp(),),
                                job_columns())


async def release_in(tx: Any, job_id: int, due_ts: float, *, step: str | None = None, mode: str | None = None,
                     reason: str | None = None, only_open: bool = False) -> None:
    """Back to pending for later (waiting for the window, a retry), in the caller's transaction;
    ``only_open`` leaves a job alone once it has ended."""
    await tx.execute(
        "UPDATE jobs SET state = 'pending', due_ts = ?, step = COALESCE(?, step), mode = COALESCE(?, mode),"
        " reason = COALESCE(?, reason), updated_at = ? WHERE id = ?"
        + (" AND state IN ('running', 'pending')" if only_open else ""),
        (due_ts, step, mode, reason, tx.stamp(), job_id),
    )


async def release(db: Database, job_id: int, due_ts: float, *, step: str | None = None,
                  mode: str | None = None, reason: str | None = None) -> None:
    async with db.transaction() as tx:
        await release_in(tx, job_id, due_ts, step=step, mode=mode, reason=reason)


async def finish_in(tx: Any, job_id: int, state: str, *, outcome: str = "", reason: str = "") -> None:
    await tx.execute("UPDATE jobs SET state = ?, outcome = ?, reason = ?, updated_at = ? WHERE id = ?",
                     (state, outcome, reason, tx.stamp(), job_id))


async def requeue_running_in(tx: Any, kind: str) -> None:
    """After a restart: a kind's jobs left running go back to the queue (each kind first closes
    its own unfinished calls, see ``crm.escort.recover`` and ``crm.callbacks.recover``)."""
    await tx.execute("UPDATE jobs SET state = 'pending', updated_at = ? WHERE kind = ? AND state = 'running'",
                     (tx.stamp(), kind))

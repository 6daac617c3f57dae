"""The one way a queue's rows are claimed: pick at most ``limit`` due rows, then change exactly
those, in the caller's transaction.

Two statements, not ``UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)``: when
such an UPDATE meets a row that another transaction changed meanwhile, PostgreSQL re-checks it
by running the subquery again, and with SKIP LOCKED the second run picks other rows, so one
claim took every due job instead of its ``n`` (a branch's robot then held the whole campaign
while the other branch found nothing). On SQLite the one writer makes the two statements as
atomic as the one.
"""

from __future__ import annotations

from typing import Any


async def claim_rows(tx: Any, table: str, where: str, order: str, params: tuple[Any, ...], limit: int,
                     set_sql: str, set_params: tuple[Any, ...], returning: str = "*") -> list[dict[str, Any]]:
    """Rows of ``table`` meeting ``where`` (its ``params``), first ``limit`` by ``order``, changed
    by ``SET set_sql`` (its ``set_params``); returned in ``order``. On PostgreSQL the rows another
    open claim holds are skipped, not waited for."""
    if limit <= 0:
        return []
    cur = await tx.execute(f"SELECT id FROM {table} WHERE {where} ORDER BY {order} LIMIT ?{tx.skip_locked}",
                           (*params, limit))
    ids = [r[0] for r in await cur.fetchall()]
    if not ids:
        return []
    # ``where`` again: a row is changed only while it still qualifies (it is ours on PostgreSQL,
    # locked by the SELECT; the test costs nothing and keeps a claim honest if that ever changes)
    cur = await tx.execute(
        f"UPDATE {table} SET {set_sql} WHERE id IN ({','.join('?' * len(ids))}) AND {where} RETURNING {returning}",
        (*set_params, *ids, *params))
    rows = {r["id"]: dict(r) for r in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]

"""Shift bindings: which login works on which desk phone, with history.

A call leg is attributed to the user bound to that phone at the moment the phone rang.
Binding a phone that a colleague holds moves it (the colleague's binding ends at that
instant) and reports who lost it, so the panel can tell them."""

from __future__ import annotations

from dataclasses import dataclass

from crm.db import Database


@dataclass(frozen=True)
class BindResult:
    extension: str | None
    displaced_user: int | None  # the colleague who held that phone


async def bind(db: Database, user_id: int, extension: str | None, at: str) -> BindResult:
    """Bind ``user_id`` to ``extension`` from ``at`` (ISO UTC); None = "not working with
    telephony now". One transaction: close the user's and the phone's open bindings, open one."""
    displaced = None
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE shift_bindings SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL",
            (at, user_id),
        )
        if extension is not None:
            cur = await tx.execute(
                "SELECT user_id FROM shift_bindings WHERE extension = ? AND ended_at IS NULL",
                (extension,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] != user_id:
                displaced = int(row[0])
            await tx.execute(
                "UPDATE shift_bindings SET ended_at = ? WHERE extension = ? AND ended_at IS NULL",
                (at, extension),
            )
            await tx.execute(
                "INSERT INTO shift_bindings (user_id, extension, started_at) VALUES (?, ?, ?)",
                (user_id, extension, at),
            )
    return BindResult(extension, displaced)


async def current_extension(db: Database, user_id: int) -> str | None:
    row = await db.fetchone(
        "SELECT extension FROM shift_bindings WHERE user_id = ? AND ended_at IS NULL", (user_id,)
    )
    return row[0] if row else None


async def user_at(db: Database, extension: str, at: str) -> int | None:
    """Who was bound to ``extension`` at ``at`` (ISO UTC)."""
    row = await db.fetchone(
        "SELECT user_id FROM shift_bindings WHERE extension = ? AND started_at <= ?"
        " AND (ended_at IS NULL OR ended_at > ?) ORDER BY started_at DESC LIMIT 1",
        (extension, at, at),
    )
    return int(row[0]) if row else None

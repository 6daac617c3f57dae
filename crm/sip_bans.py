"""SIP scanners' bans (issue #30): kept with their end, each a telephony change (the boxes
render the live ones into a PJSIP ACL), banned and lifted with an audit line."""

from __future__ import annotations

from typing import Any

from crm.db import Database
from crm.telephony import changed_in


async def ban(db: Database, address: str, until: float, reason: str, now: float) -> bool:
    """Ban ``address`` until ``until``; False when it was banned already."""
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO sip_bans (address, until_ts, reason, created_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (address) DO UPDATE SET until_ts = excluded.until_ts, reason = excluded.reason,"
            " created_ts = excluded.created_ts WHERE sip_bans.until_ts <= excluded.created_ts",
            (address, until, reason[:200], now))
        if not cur.rowcount:
            return False
        await changed_in(tx, "sip_ban", now, "address", address, detail=reason[:200], actor="защита АТС", user_id=None)
        return True


async def unban(db: Database, address: str, now: float, *, actor: str, user_id: int | None) -> None:
    async with db.transaction() as tx:
        cur = await tx.execute("DELETE FROM sip_bans WHERE address = ?", (address,))
        if cur.rowcount:
            await changed_in(tx, "sip_unban", now, "address", address, actor=actor, user_id=user_id)


async def active(db: Database, now: float) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall(
        "SELECT address, until_ts, reason, created_ts FROM sip_bans WHERE until_ts > ? ORDER BY created_ts DESC", (now,))]

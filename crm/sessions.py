"""Server-side panel sessions. The encrypted cookie carries a random token; the database keeps
its SHA-256 and decides on every request whether it still admits its user, so logout,
deactivation and a password or role change end a session at once, even for a copied cookie."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from crm.db import Database

SEEN_EVERY = 60.0  # seconds: how often a request refreshes seen_ts (not one write per request)


@dataclass(frozen=True)
class SessionPolicy:
    idle_seconds: float = 3600.0
    absolute_seconds: float = 12 * 3600.0


@dataclass(frozen=True)
class SessionUser:
    """Who a valid session admits, read from the database on every request."""

    session_id: str
    user_id: int
    login: str
    name: str
    role: str
    history: str  # none | read | edit
    appeals: bool = False  # the «История обращений» right
    must_change: bool = False  # an admin's one-time password: only /password until changed


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def still_valid(created_ts: float, seen_ts: float, ended_ts: float | None, now: float,
                policy: SessionPolicy) -> bool:
    """The session rule: not ended, seen within the idle timeout, younger than the limit."""
    return (ended_ts is None and now - seen_ts <= policy.idle_seconds
            and now - created_ts <= policy.absolute_seconds)


async def start(db: Database, user_id: int, now: float, address: str = "") -> str:
    """A new session for a user who just logged in; returns the cookie's token."""
    token = secrets.token_urlsafe(32)
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO sessions (id, user_id, created_ts, seen_ts, address) VALUES (?, ?, ?, ?, ?)",
            (_hash(token), user_id, now, now, address[:64]),
        )
    return token


async def admit(db: Database, token: Any, now: float, policy: SessionPolicy, *, touch: bool = True,
                ) -> SessionUser | None:
    """The active user behind a cookie's token, or None (unknown, ended, idle, too old, or the
    user deactivated). An idle or too old session is ended on the way. ``touch``: the request
    is the user's own doing and restarts the idle time; a page's own background work (the live
    stream's keep-alive, a list refreshing itself) is not (#30: a tab left open on an unattended
    reception PC must not keep the session for 12 hours)."""
    if not isinstance(token, str) or not token or len(token) > 100:
        return None
    sid = _hash(token)
    row = await db.fetchone(
        "SELECT s.created_ts, s.seen_ts, s.ended_ts, u.id, u.login, u.full_name, u.role,"
        " u.history_access, u.appeals_access, u.active, u.must_change_password"
        " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?",
        (sid,),
    )
    if row is None or row["ended_ts"] is not None:
        return None
    if not row["active"]:
        await end(db, sid, now, "user deactivated")
        return None
    if not still_valid(row["created_ts"], row["seen_ts"], row["ended_ts"], now, policy):
        await end(db, sid, now, "timed out")
        return None
    if touch and now - row["seen_ts"] >= SEEN_EVERY:
        async with db.transaction() as tx:
            await tx.execute("UPDATE sessions SET seen_ts = ? WHERE id = ? AND ended_ts IS NULL", (now, sid))
    return SessionUser(sid, int(row["id"]), row["login"], row["full_name"] or row["login"], row["role"],
                       row["history_access"], bool(row["appeals_access"]), bool(row["must_change_password"]))


async def end(db: Database, session_id: str, now: float, reason: str) -> None:
    async with db.transaction() as tx:
        await tx.execute("UPDATE sessions SET ended_ts = ?, ended_reason = ? WHERE id = ? AND ended_ts IS NULL",
                         (now, reason, session_id))


async def end_token(db: Database, token: Any, now: float, reason: str) -> None:
    if isinstance(token, str) and token:
        await end(db, _hash(token), now, reason)


async def end_all(tx: Any, user_id: int, now: float, reason: str, keep: str = "") -> int:
    """End every open session of a user, inside the caller's transaction (the same one that
    deactivates the user or changes the password or role), but ``keep`` (a session id: the one
    that changed its own password). Returns how many were ended."""
    cur = await tx.execute(
        "UPDATE sessions SET ended_ts = ?, ended_reason = ? WHERE user_id = ? AND ended_ts IS NULL AND id <> ?",
        (now, reason, user_id, keep),
    )
    return int(cur.rowcount or 0)


async def open_count(db: Database, user_id: int) -> int:
    row = await db.fetchone("SELECT COUNT(*) FROM sessions WHERE user_id = ? AND ended_ts IS NULL", (user_id,))
    return int(row[0]) if row else 0

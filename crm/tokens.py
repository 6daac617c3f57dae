"""API tokens: random, shown once, stored as SHA-256 hashes (they are long and random, so a
plain hash is enough; no password stretching needed). Each has scopes (what it may do) and may
expire."""

from __future__ import annotations

import hashlib
import secrets

from crm.db import Database

PREFIX = "cpbx_"
SCOPES = ("calls:read", "requests:write", "mis:sync")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(db: Database, name: str, scopes: tuple[str, ...] = ("calls:read",),
                       expires_ts: float | None = None) -> str:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {unknown}; known: {', '.join(SCOPES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO api_tokens (name, token_hash, created_at, scopes, expires_ts) VALUES (?, ?, ?, ?, ?)",
            (name, _hash(token), tx.stamp(), " ".join(scopes), expires_ts),
        )
    return token


async def check_token(db: Database, token: str, scope: str = "calls:read", now: float | None = None) -> str | None:
    """The token's name when it is valid, carries ``scope`` and has not expired, else None.
    Anything that is not our token's shape (non-ASCII, too long) is simply not valid."""
    if not token.startswith(PREFIX) or len(token) > 200 or not token.isascii():
        return None
    row = await db.fetchone(
        "SELECT id, name, scopes, expires_ts FROM api_tokens WHERE token_hash = ? AND revoked = 0", (_hash(token),)
    )
    if row is None or scope not in str(row["scopes"]).split():
        return None
    if row["expires_ts"] is not None and now is not None and now >= float(row["expires_ts"]):
        return None
    async with db.transaction() as tx:
        await tx.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (tx.stamp(), row[0]))
    return str(row[1])


async def revoke_token(db: Database, name: str) -> bool:
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE api_tokens SET revoked = 1 WHERE name = ?", (name,))
        return cur.rowcount > 0

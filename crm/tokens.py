"""API tokens: random, shown once, stored as SHA-256 hashes (they are long and random, so a
plain hash is enough; no password stretching needed)."""

from __future__ import annotations

import hashlib
import secrets

from crm.db import Database, utc_now

PREFIX = "cpbx_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(db: Database, name: str) -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO api_tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
            (name, _hash(token), utc_now()),
        )
    return token


async def check_token(db: Database, token: str) -> str | None:
    """The token's name when it is valid, else None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    row = await db.fetchone(
        "SELECT id, name FROM api_tokens WHERE token_hash = ? AND revoked = 0", (_hash(token),)
    )
    if row is None:
        return None
    async with db.transaction() as tx:
        await tx.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (utc_now(), row[0]))
    return str(row[1])


async def revoke_token(db: Database, name: str) -> bool:
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE api_tokens SET revoked = 1 WHERE name = ?", (name,))
        return cur.rowcount > 0

"""Staff accounts: scrypt password hashes, never plain text."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from crm.db import Database, utc_now

ROLES = ("administrator", "director", "settings_admin")
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


async def create_user(
    db: Database, login: str, password: str, *, full_name: str = "", role: str = "administrator"
) -> int:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO users (login, full_name, role, password_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (login, full_name, role, hash_password(password), utc_now()),
        )
        return int(cur.lastrowid or 0)


async def authenticate(db: Database, login: str, password: str) -> dict[str, object] | None:
    row = await db.fetchone(
        "SELECT id, login, full_name, role, password_hash, history_access FROM users WHERE login = ? AND active = 1",
        (login,),
    )
    if row is None:
        # spend the same scrypt time as for a real user: no login enumeration by timing
        verify_password(password, _dummy_hash())
        return None
    if not verify_password(password, row["password_hash"]):
        return None
    return {"id": row["id"], "login": row["login"], "full_name": row["full_name"], "role": row["role"],
            "history_access": row["history_access"]}


async def user_exists(db: Database, login: str) -> bool:
    return await db.fetchone("SELECT 1 FROM users WHERE login = ?", (login,)) is not None

"""Staff accounts: Argon2id password hashes (never plain text), verified in a worker thread so
a flood of logins never stalls the event loop. Older scrypt hashes still verify and are
replaced by Argon2id on the next successful login. Deactivating a user or changing their
password or role ends their sessions in the same transaction."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from crm import sessions
from crm.db import Database

ROLES = ("administrator", "director", "settings_admin")
HISTORY_RIGHTS = ("none", "read", "edit")
# OWASP's Argon2id minimum (19 MiB, 2 passes): about 50 ms here
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# at most two hashes at once (each takes 19 MiB and a core): a flood queues instead. One
# semaphore per event loop: an asyncio primitive belongs to the loop that first waits on it
_HASHING: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    if stored.startswith("scrypt$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    """Hashes made before Argon2id (scrypt N=2^14): verified once more, then replaced."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected), maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


async def _in_thread(fn: Any, *args: Any) -> Any:
    loop = asyncio.get_running_loop()
    if loop not in _HASHING:
        for old in [lp for lp in _HASHING if lp.is_closed()]:
            del _HASHING[old]
        _HASHING[loop] = asyncio.Semaphore(2)
    async with _HASHING[loop]:
        return await asyncio.to_thread(fn, *args)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


async def create_user(
    db: Database, login: str, password: str, *, full_name: str = "", role: str = "administrator",
    history_access: str = "none", appeals_access: bool | None = None, one_time: bool = False,
) -> int:
    """A new account; it sees no call history until a settings admin grants it. «История
    обращений» is an administrator's and a director's by default (seed 004), a settings
    admin's when granted."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if history_access not in HISTORY_RIGHTS:
        raise ValueError(f"unknown history right {history_access!r}")
    hashed = await _in_thread(hash_password, password)
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO users (login, full_name, role, password_hash, created_at, history_access, appeals_access,"
            " must_change_password) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (login, full_name, role, hashed, tx.stamp(), history_access,
             int(role != "settings_admin" if appeals_access is None else appeals_access), int(one_time)),
        )
        return int(cur.lastrowid or 0)


async def authenticate(db: Database, login: str, password: str) -> dict[str, object] | None:
    row = await db.fetchone(
        "SELECT id, login, full_name, role, password_hash, history_access FROM users WHERE login = ? AND active = 1",
        (login,),
    )
    if row is None:
        # spend the same hashing time as for a real user: no login enumeration by timing
        await _in_thread(verify_password, password, _dummy_hash())
        return None
    if not await _in_thread(verify_password, password, row["password_hash"]):
        return None
    if needs_rehash(row["password_hash"]):
        fresh = await _in_thread(hash_password, password)
        async with db.transaction() as tx:
            await tx.execute("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                             (fresh, row["id"], row["password_hash"]))
    return {"id": row["id"], "login": row["login"], "full_name": row["full_name"], "role": row["role"],
            "history_access": row["history_access"]}


async def user_exists(db: Database, login: str) -> bool:
    return await db.fetchone("SELECT 1 FROM users WHERE login = ?", (login,)) is not None


async def update_access(db: Database, user_id: int, role: str, history_access: str, now: float,
                        appeals: bool | None = None) -> bool:
    """Change a user's role, history right and «История обращений» right (None: unchanged);
    their open sessions end when any changed (they log in again with the new rights). Returns
    whether anything changed."""
    if role not in ROLES or history_access not in HISTORY_RIGHTS:
        raise ValueError("unknown role or right")
    async with db.transaction() as tx:
        cur = await tx.execute(
            "UPDATE users SET role = ?, history_access = ?, appeals_access = COALESCE(?, appeals_access)"
            " WHERE id = ? AND (role != ? OR history_access != ? OR appeals_access != COALESCE(?, appeals_access))",
            (role, history_access, None if appeals is None else int(appeals), user_id, role, history_access,
             None if appeals is None else int(appeals)))
        if cur.rowcount:
            await sessions.end_all(tx, user_id, now, "role or right changed")
        return bool(cur.rowcount)


async def set_active(db: Database, user_id: int, active: bool, now: float) -> int:
    """Deactivate (ending every session at once) or reactivate; returns the sessions ended."""
    async with db.transaction() as tx:
        await tx.execute("UPDATE users SET active = ? WHERE id = ?", (int(active), user_id))
        return 0 if active else await sessions.end_all(tx, user_id, now, "user deactivated")


async def set_password(db: Database, user_id: int, password: str, now: float, *, one_time: bool = False,
                       keep_session: str = "") -> None:
    """A new password; every session of the user ends (but ``keep_session``: the one that
    changed its own password). ``one_time``: an admin's reset, changed at the next login."""
    hashed = await _in_thread(hash_password, password)
    async with db.transaction() as tx:
        await tx.execute("UPDATE users SET password_hash = ?, must_change_password = ? WHERE id = ?",
                         (hashed, int(one_time), user_id))
        await sessions.end_all(tx, user_id, now, "password changed", keep=keep_session)


async def verify_own(db: Database, user_id: int, password: str) -> bool:
    """Is ``password`` this user's current one (asked before they choose a new one)?"""
    row = await db.fetchone("SELECT password_hash FROM users WHERE id = ? AND active = 1", (user_id,))
    return row is not None and bool(await _in_thread(verify_password, password[:200], row["password_hash"]))

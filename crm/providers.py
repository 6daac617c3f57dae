"""The clinic's SIP providers (issue #29): storage of what ``crm.rules.telephony`` checked.
Each change bumps the telephony revision in its own transaction, with its audit line."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from crm import audit
from crm.db import Database
from crm.rules.telephony import Provider, TelephonyError

_COLUMNS = ("name", "server", "port", "transport", "auth", "login", "password", "auth_user", "from_user",
            "from_domain", "outbound_proxy", "expiry", "retry", "addresses", "did_from", "codecs", "dtmf",
            "max_calls", "qualify", "outgoing", "enabled")


def _provider(row: Any) -> Provider:
    r = dict(row)
    return Provider(
        id=int(r["id"]), name=r["name"], server=r["server"], port=int(r["port"]), transport=r["transport"],
        auth=r["auth"], login=r["login"], password=r["password"], auth_user=r["auth_user"],
        from_user=r["from_user"], from_domain=r["from_domain"], outbound_proxy=r["outbound_proxy"],
        expiry=int(r["expiry"]), retry=int(r["retry"]), addresses=tuple(r["addresses"].split()),
        did_from=r["did_from"], codecs=tuple(r["codecs"].split(",")), dtmf=r["dtmf"],
        max_calls=int(r["max_calls"]), qualify=bool(r["qualify"]), outgoing=bool(r["outgoing"]),
        enabled=bool(r["enabled"]))


def _values(p: Provider) -> tuple[Any, ...]:
    d = asdict(p)
    d["addresses"] = "\n".join(p.addresses)
    d["codecs"] = ",".join(p.codecs)
    d["qualify"], d["outgoing"], d["enabled"] = int(p.qualify), int(p.outgoing), int(p.enabled)
    return tuple(d[c] for c in _COLUMNS)


async def all_providers(db: Database) -> list[Provider]:
    return [_provider(r) for r in await db.fetchall("SELECT * FROM sip_providers ORDER BY id")]


async def provider(db: Database, provider_id: int) -> Provider | None:
    row = await db.fetchone("SELECT * FROM sip_providers WHERE id = ?", (provider_id,))
    return _provider(row) if row is not None else None


async def revision(db: Database) -> int:
    row = await db.fetchone("SELECT revision FROM telephony_revision WHERE id = 1")
    return int(row[0]) if row is not None else 0


async def _bump(tx: Any) -> None:
    await tx.execute("UPDATE telephony_revision SET revision = revision + 1 WHERE id = 1")


async def save_provider(db: Database, p: Provider, now: float, *, actor: str = "", user_id: int | None = None,
                        keep_password: bool = False) -> int:
    """Insert (``p.id == 0``) or update a provider; an empty password on an edit keeps the
    stored one (the form never shows it back). The new id."""
    async with db.transaction() as tx:
        clash = await (await tx.execute("SELECT id FROM sip_providers WHERE name = ? AND id <> ?",
                                        (p.name, p.id))).fetchone()
        if clash is not None:
            raise TelephonyError("name", "Провайдер с таким названием уже есть")
        if p.outgoing:
            await tx.execute("UPDATE sip_providers SET outgoing = 0 WHERE id <> ?", (p.id,))
        values = _values(p)
        if p.id:
            columns = [c for c in _COLUMNS if not (keep_password and c == "password")]
            vals = [v for c, v in zip(_COLUMNS, values, strict=True) if not (keep_password and c == "password")]
            cur = await tx.execute(
                f"UPDATE sip_providers SET {', '.join(f'{c} = ?' for c in columns)}, updated_at = ? WHERE id = ?",
                (*vals, now, p.id))
            if cur.rowcount == 0:
                raise TelephonyError("name", "Нет такого провайдера")
            new_id = p.id
        else:
            cur = await tx.execute(
                f"INSERT INTO sip_providers ({', '.join(_COLUMNS)}, updated_at)"
                f" VALUES ({', '.join('?' for _ in _COLUMNS)}, ?) RETURNING id", (*values, now))
            new_id = int((await cur.fetchone())[0])
        await _bump(tx)
        await audit.record_in(tx, actor, "provider_save", now, user_id=user_id, object_kind="provider",
                              object_id=new_id, detail=p.name)
        return new_id


async def delete_provider(db: Database, provider_id: int, now: float, *, actor: str = "",
                          user_id: int | None = None) -> None:
    async with db.transaction() as tx:
        cur = await tx.execute("DELETE FROM sip_providers WHERE id = ?", (provider_id,))
        if cur.rowcount:
            await _bump(tx)
            await audit.record_in(tx, actor, "provider_delete", now, user_id=user_id, object_kind="provider",
                                  object_id=provider_id)

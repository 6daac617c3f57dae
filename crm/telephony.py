"""The clinic's telephony (issue #29): storage of the SIP providers, clinic numbers, desk phones
and queues that ``crm.rules.telephony`` and ``crm.rules.queues`` checked.
Each change bumps the telephony revision in its own transaction, with its audit line."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from typing import Any, NamedTuple

from crm import audit
from crm.db import Database
from crm.rules import browser_phone
from crm.rules.provisioning import token_hash
from crm.rules.queues import ClinicQueue
from crm.rules.telephony import (
    SHIPPED_PHONES,
    BranchOut,
    ClinicNumber,
    DeskPhone,
    Provider,
    TelephonyError,
    md5_cred,
    phone_label,
)
from crm.secret_box import SecretBox

CLOSED = "closed"  # a browser phone's md5_cred after its user logged out: no password matches it
_COLUMNS = ("name", "server", "port", "transport", "auth", "login", "password", "auth_user", "from_user",
            "from_domain", "outbound_proxy", "expiry", "retry", "addresses", "did_from", "codecs", "dtmf",
            "max_calls", "qualify", "dial_format", "outgoing", "enabled", "branch_id")


def _provider(row: Any) -> Provider:
    r = dict(row)
    return Provider(
        id=int(r["id"]), name=r["name"], server=r["server"], port=int(r["port"]), transport=r["transport"],
        auth=r["auth"], login=r["login"], password=r["password"], auth_user=r["auth_user"],
        from_user=r["from_user"], from_domain=r["from_domain"], outbound_proxy=r["outbound_proxy"],
        expiry=int(r["expiry"]), retry=int(r["retry"]), addresses=tuple(r["addresses"].split()),
        did_from=r["did_from"], codecs=tuple(r["codecs"].split(",")), dtmf=r["dtmf"],
        max_calls=int(r["max_calls"]), qualify=bool(r["qualify"]), dial_format=str(r["dial_format"]),
        outgoing=bool(r["outgoing"]), enabled=bool(r["enabled"]),
        branch=int(r["branch_id"]) if r["branch_id"] is not None else None)


def _values(p: Provider) -> tuple[Any, ...]:
    d = asdict(p)
    d["addresses"] = "\n".join(p.addresses)
    d["codecs"] = ",".join(p.codecs)
    d["qualify"], d["outgoing"], d["enabled"] = int(p.qualify), int(p.outgoing), int(p.enabled)
    d["branch_id"] = p.branch
    return tuple(d[c] for c in _COLUMNS)


async def all_providers(db: Database) -> list[Provider]:
    return [_provider(r) for r in await db.fetchall("SELECT * FROM sip_providers ORDER BY id")]


async def provider(db: Database, provider_id: int) -> Provider | None:
    row = await db.fetchone("SELECT * FROM sip_providers WHERE id = ?", (provider_id,))
    return _provider(row) if row is not None else None


async def revision(db: Database) -> int:
    row = await db.fetchone("SELECT revision FROM telephony_revision WHERE id = 1")
    return int(row[0]) if row is not None else 0


async def changed_in(tx: Any, action: str, now: float, kind: str, object_id: Any, detail: str = "", *,
                   actor: str, user_id: int | None) -> None:
    """What every change does in its own transaction: a new revision for the boxes to apply,
    and the audit line."""
    await tx.execute("UPDATE telephony_revision SET revision = revision + 1 WHERE id = 1")
    await audit.record_in(tx, actor, action, now, user_id=user_id, object_kind=kind, object_id=object_id,
                          detail=detail)


async def save_provider(db: Database, p: Provider, now: float, *, actor: str = "", user_id: int | None = None) -> int:
    """Insert (``p.id == 0``) or update a provider. The new id."""
    async with db.transaction() as tx:
        clash = await (await tx.execute("SELECT id FROM sip_providers WHERE name = ? AND id <> ?",
                                        (p.name, p.id))).fetchone()
        if clash is not None:
            raise TelephonyError("name", "Провайдер с таким названием уже есть")
        if p.branch is not None and not await (await tx.execute(
                "SELECT 1 FROM branches WHERE id = ?", (p.branch,))).fetchone():
            raise TelephonyError("branch", "Нет такого филиала")
        if p.outgoing:
            await tx.execute("UPDATE sip_providers SET outgoing = 0 WHERE id <> ?", (p.id,))
        values = _values(p)
        if p.id:
            cur = await tx.execute(
                f"UPDATE sip_providers SET {', '.join(f'{c} = ?' for c in _COLUMNS)}, updated_at = ? WHERE id = ?",
                (*values, now, p.id))
            if cur.rowcount == 0:
                raise TelephonyError("name", "Нет такого провайдера")
            new_id = p.id
        else:
            cur = await tx.execute(
                f"INSERT INTO sip_providers ({', '.join(_COLUMNS)}, updated_at)"
                f" VALUES ({', '.join('?' for _ in _COLUMNS)}, ?) RETURNING id", (*values, now))
            new_id = int((await cur.fetchone())[0])
        await changed_in(tx, "provider_save", now, "provider", new_id, detail=p.name, actor=actor, user_id=user_id)
        return new_id


async def delete_provider(db: Database, provider_id: int, now: float, *, actor: str = "",
                          user_id: int | None = None) -> None:
    async with db.transaction() as tx:
        cur = await tx.execute("DELETE FROM sip_providers WHERE id = ?", (provider_id,))
        if cur.rowcount:
            await changed_in(tx, "provider_delete", now, "provider", provider_id, actor=actor, user_id=user_id)


_NUMBER_COLUMNS = ("did", "queue", "hours", "holidays", "closed_message", "closed_mobile", "closed_callback")


async def numbers(db: Database) -> list[ClinicNumber]:
    rows = await db.fetchall(f"SELECT {', '.join(_NUMBER_COLUMNS)}, branch_id FROM clinic_numbers ORDER BY did")
    return [ClinicNumber(*(str(v) for v in tuple(r)[:6]), closed_callback=bool(r[6]),
                         branch=int(r[7]) if r[7] is not None else None) for r in rows]


async def save_number(db: Database, n: ClinicNumber, now: float, *, branch_id: int | None = None,
                      ad_channel: str = "", actor: str = "", user_id: int | None = None) -> None:
    """Add a clinic number, or change the queue (and branch, channel) of one."""
    ad_channel = " ".join(ad_channel.split())[:100]
    async with db.transaction() as tx:
        if branch_id is not None and not await (await tx.execute(
                "SELECT 1 FROM branches WHERE id = ?", (branch_id,))).fetchone():
            raise TelephonyError("branch", "Нет такого филиала")
        values = (n.did, n.queue, n.hours, n.holidays, n.closed_message, n.closed_mobile, int(n.closed_callback))
        await tx.execute(
            f"INSERT INTO clinic_numbers (branch_id, ad_channel, {', '.join(_NUMBER_COLUMNS)})"
            f" VALUES (?, ?, {', '.join('?' for _ in _NUMBER_COLUMNS)}) ON CONFLICT (did) DO UPDATE SET"
            " branch_id = excluded.branch_id, ad_channel = excluded.ad_channel, "
            + ", ".join(f"{c} = excluded.{c}" for c in _NUMBER_COLUMNS[1:]), (branch_id, ad_channel, *values))
        await changed_in(tx, "number_save", now, "clinic_number", n.did, detail=n.queue, actor=actor, user_id=user_id)


async def delete_number(db: Database, did: str, now: float, *, actor: str = "", user_id: int | None = None) -> None:
    async with db.transaction() as tx:
        cur = await tx.execute("DELETE FROM clinic_numbers WHERE did = ?", (did,))
        if cur.rowcount:
            await changed_in(tx, "number_delete", now, "clinic_number", did, actor=actor, user_id=user_id)


async def desk_phones(db: Database, *, shipped: bool = False) -> list[DeskPhone]:
    """The phones set up in the panel (the demo's three are the shipped configuration's: with
    ``shipped``, those too, without a password)."""
    rows = await db.fetchall("SELECT extension, label, queues, md5_cred, branch_id, secure, browser_user_id"
                             " FROM desk_phones" + ("" if shipped else " WHERE md5_cred <> ''") + " ORDER BY extension")
    return [DeskPhone(r[0], r[1], tuple(q for q in str(r[2]).split(",") if q), r[3],
                      int(r[4]) if r[4] is not None else None, bool(r[5]), r[6] is not None) for r in rows]


async def open_browser_phone(db: Database, user_id: int, label: str, queues: tuple[str, ...], now: float,
                             ) -> tuple[str, str] | None:
    """The user's phone in the browser (#34) with a new password for this login: (extension,
    password), the number made on first use (the lowest free of 1900-1999, ringing in
    ``queues``); None when the range is full. The old password stops working once applied."""
    password = new_password()
    async with db.transaction() as tx:
        row = await (await tx.execute("SELECT extension FROM desk_phones WHERE browser_user_id = ?",
                                      (user_id,))).fetchone()
        if row is not None:
            extension = str(row[0])
            await tx.execute("UPDATE desk_phones SET md5_cred = ? WHERE extension = ?",
                             (md5_cred(extension, password), extension))
        else:
            used = {str(r[0]) for r in await (await tx.execute("SELECT extension FROM desk_phones")).fetchall()}
            found = browser_phone.next_extension(used)
            if found is None:
                return None
            extension = found
            await tx.execute("INSERT INTO desk_phones (extension, label, queues, md5_cred, browser_user_id)"
                             " VALUES (?, ?, ?, ?, ?)",
                             (extension, phone_label(label), ",".join(queues), md5_cred(extension, password),
                              user_id))
        await changed_in(tx, "browser_phone_open", now, "desk_phone", extension, actor=label, user_id=user_id)
    return extension, password


async def save_browser_phone(db: Database, phone: DeskPhone, now: float, *, branch_id: int | None,
                             actor: str = "", user_id: int | None = None) -> None:
    """A browser phone's queues and branch, set by the integrator (its name stays its user's)."""
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE desk_phones SET queues = ?, branch_id = ? WHERE extension = ?"
                               " AND browser_user_id IS NOT NULL", (",".join(phone.queues), branch_id, phone.extension))
        if cur.rowcount == 0:
            raise TelephonyError("extension", f"Нет телефона в браузере с номером {phone.extension}")
        await changed_in(tx, "phone_save", now, "desk_phone", phone.extension, detail="в браузере", actor=actor,
                         user_id=user_id)


async def close_browser_phone(db: Database, user_id: int, now: float) -> None:
    """The user logged out: the browser's password stops working (a new one at the next login)."""
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE desk_phones SET md5_cred = ? WHERE browser_user_id = ? AND md5_cred <> ?",
                               (CLOSED, user_id, CLOSED))
        if cur.rowcount:
            await changed_in(tx, "browser_phone_close", now, "desk_phone", "", actor="", user_id=user_id)


async def branch_outs(db: Database) -> list[BranchOut]:
    """Each branch's outgoing provider and caller ID, where one is chosen."""
    rows = await db.fetchall("SELECT id, out_provider_id, out_line FROM branches"
                             " WHERE out_provider_id IS NOT NULL OR out_line <> '' ORDER BY id")
    return [BranchOut(int(r[0]), int(r[1]) if r[1] is not None else None, str(r[2])) for r in rows]


async def save_branch_out(db: Database, out: BranchOut, now: float, *, actor: str = "",
                          user_id: int | None = None) -> None:
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE branches SET out_provider_id = ?, out_line = ? WHERE id = ?",
                               (out.provider, out.line, out.branch))
        if cur.rowcount == 0:
            raise TelephonyError("branch", "Нет такого филиала")
        await changed_in(tx, "branch_out_save", now, "branch", out.branch, detail=out.line, actor=actor,
                       user_id=user_id)


def new_password() -> str:
    """A phone's SIP password: 16 random letters and digits (typed once into a phone)."""
    return "".join(secrets.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(16))


class PhoneSecret(NamedTuple):
    """A phone's new password and its provisioning URL's token: shown once."""

    password: str
    token: str = ""


def _secret_columns(extension: str, box: SecretBox | None) -> tuple[PhoneSecret, tuple[str, str, str]]:
    """A new password; with the installation's key, also a provisioning token. The columns:
    md5_cred, sealed_password, provision_hash."""
    password = new_password()
    if box is None:
        return PhoneSecret(password), (md5_cred(extension, password), "", "")
    token = secrets.token_urlsafe(24)
    return PhoneSecret(password, token), (md5_cred(extension, password), box.seal(password), token_hash(token))


async def save_phone(db: Database, phone: DeskPhone, now: float, *, branch_id: int | None = None,
                     actor: str = "", user_id: int | None = None, box: SecretBox | None = None) -> PhoneSecret | None:
    """Add a phone (returns its new password, shown once) or change its label, branch and
    queues (returns None)."""
    async with db.transaction() as tx:
        row = await (await tx.execute("SELECT md5_cred FROM desk_phones WHERE extension = ?",
                                      (phone.extension,))).fetchone()
        secret = None
        if row is None:
            secret, columns = _secret_columns(phone.extension, box)
            await tx.execute("INSERT INTO desk_phones (extension, branch_id, label, queues, md5_cred, sealed_password,"
                             " provision_hash, secure) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (phone.extension, branch_id, phone.label, ",".join(phone.queues), *columns,
                              int(phone.secure)))
        elif not row[0]:
            raise TelephonyError("extension", f"Номер {phone.extension} занят телефоном демо-клиники")
        else:
            await tx.execute("UPDATE desk_phones SET branch_id = ?, label = ?, queues = ?, secure = ? WHERE extension = ?",
                             (branch_id, phone.label, ",".join(phone.queues), int(phone.secure), phone.extension))
        await changed_in(tx, "phone_save", now, "desk_phone", phone.extension,
                       detail="новый" if secret else phone.label, actor=actor, user_id=user_id)
        return secret


async def reset_phone_password(db: Database, extension: str, now: float, *, actor: str = "",
                               user_id: int | None = None, box: SecretBox | None = None) -> PhoneSecret:
    """A new password (and provisioning URL); the old ones stop working once applied."""
    secret, columns = _secret_columns(extension, box)
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE desk_phones SET md5_cred = ?, sealed_password = ?, provision_hash = ?"
                               " WHERE extension = ? AND md5_cred <> '' AND browser_user_id IS NULL",
                               (*columns, extension))
        if cur.rowcount == 0:
            raise TelephonyError("extension", "Пароль меняется только у телефонов, заведённых здесь (у телефона в браузере он новый при каждом входе)")
        await changed_in(tx, "phone_password", now, "desk_phone", extension, actor=actor, user_id=user_id)
    return secret


async def phone_by_token(db: Database, token: str) -> tuple[DeskPhone, str] | None:
    """The phone a provisioning URL's token belongs to, and its sealed password."""
    if not token:
        return None
    row = await db.fetchone("SELECT extension, label, queues, md5_cred, branch_id, sealed_password, secure FROM desk_phones"
                            " WHERE provision_hash = ? AND md5_cred <> '' AND sealed_password <> ''",
                            (token_hash(token),))
    if row is None:
        return None
    return DeskPhone(row[0], row[1], tuple(q for q in str(row[2]).split(",") if q), row[3],
                     int(row[4]) if row[4] is not None else None, bool(row[6])), str(row[5])


async def note_provisioned(db: Database, extension: str, now: float, *, address: str, file_name: str) -> None:
    """A phone took its settings: when (the panel shows it) and the audit line."""
    async with db.transaction() as tx:
        await tx.execute("UPDATE desk_phones SET provisioned_at = ? WHERE extension = ?", (now, extension))
        await audit.record_in(tx, f"телефон {extension}", "phone_provisioned", now, object_kind="desk_phone",
                              object_id=extension, detail=file_name[:60], address=address[:60])


async def delete_phone(db: Database, extension: str, now: float, *, actor: str = "", user_id: int | None = None) -> None:
    if extension in SHIPPED_PHONES:
        raise TelephonyError("extension", "Телефоны демо-клиники удаляются из asterisk-config")
    async with db.transaction() as tx:
        cur = await tx.execute("DELETE FROM desk_phones WHERE extension = ? AND md5_cred <> ''", (extension,))
        if cur.rowcount:
            await changed_in(tx, "phone_delete", now, "desk_phone", extension, actor=actor, user_id=user_id)


async def clinic_queues(db: Database) -> list[ClinicQueue]:
    rows = await db.fetchall("SELECT id, title, strategy, ring_seconds, max_wait, on_timeout FROM clinic_queues"
                             " ORDER BY id")
    return [ClinicQueue(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), r[5]) for r in rows]


async def save_queue(db: Database, q: ClinicQueue, now: float, *, actor: str = "", user_id: int | None = None) -> int:
    async with db.transaction() as tx:
        clash = await (await tx.execute("SELECT id FROM clinic_queues WHERE title = ? AND id <> ?",
                                        (q.title, q.id))).fetchone()
        if clash is not None:
            raise TelephonyError("title", "Очередь с таким названием уже есть")
        values = (q.title, q.strategy, q.ring_seconds, q.max_wait, q.on_timeout)
        if q.id:
            await tx.execute("UPDATE clinic_queues SET title = ?, strategy = ?, ring_seconds = ?, max_wait = ?,"
                             " on_timeout = ? WHERE id = ?", (*values, q.id))
            queue_id = q.id
        else:
            cur = await tx.execute("INSERT INTO clinic_queues (title, strategy, ring_seconds, max_wait, on_timeout)"
                                   " VALUES (?, ?, ?, ?, ?) RETURNING id", values)
            queue_id = int((await cur.fetchone())[0])
        await changed_in(tx, "queue_save", now, "queue", queue_id, detail=q.title, actor=actor, user_id=user_id)
        return queue_id


async def delete_queue(db: Database, queue_id: int, now: float, *, actor: str = "", user_id: int | None = None) -> None:
    """A queue no number rings and no queue sends its callers to."""
    name = ClinicQueue(queue_id, "").name
    async with db.transaction() as tx:
        used = await (await tx.execute("SELECT did FROM clinic_numbers WHERE queue = ? LIMIT 1", (name,))).fetchone()
        if used is not None:
            raise TelephonyError("queue", f"Очередь звонит по номеру {used[0]}: сначала выберите номеру другую")
        sent = await (await tx.execute("SELECT title FROM clinic_queues WHERE on_timeout = ? LIMIT 1",
                                       (name,))).fetchone()
        if sent is not None:
            raise TelephonyError("queue", f"В эту очередь переводит очередь «{sent[0]}»")
        cur = await tx.execute("DELETE FROM clinic_queues WHERE id = ?", (queue_id,))
        if cur.rowcount:
            await changed_in(tx, "queue_delete", now, "queue", queue_id, actor=actor, user_id=user_id)

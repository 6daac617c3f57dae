"""The e-mail outbox: letters are queued in the same transaction as the change they report,
then sent over SMTP (``pbx.outbound.mailer``) with retries and a delivery state (queued | sending |
sent | failed). Also the callback robot's letters to the clinic (seed 003)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from crm.claim import claim_rows
from crm.db import Database
from crm.rules import callback as cr

MAIL_TRIES = 5


async def enqueue(tx: Any, key: str, request_id: int | None, to: tuple[str, ...], subject: str, body: str,
                  now: float, sender: str = "") -> None:
    await tx.execute(
        "INSERT INTO mail_outbox (mail_key, request_id, to_addrs, from_addr, subject, body, next_try_ts, created_ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mail_key) DO NOTHING",
        (key, request_id, ",".join(to), sender, subject, body, now, now))


async def claim(db: Database, now: float, limit: int) -> list[dict[str, Any]]:
    async with db.transaction() as tx:
        return await claim_rows(tx, "mail_outbox", "state = 'queued' AND next_try_ts <= ?", "next_try_ts, id",
                                (now,), limit, "state = 'sending'", ())


async def result(db: Database, letter: dict[str, Any], error: str, now: float) -> None:
    """"" : sent. Otherwise retried with a growing pause (1, 2, 4, 8 min), then failed."""
    async with db.transaction() as tx:
        tries = letter["attempts"] + 1
        if not error:
            await tx.execute("UPDATE mail_outbox SET state = 'sent', attempts = ?, sent_ts = ?, error = ''"
                             " WHERE id = ?", (tries, now, letter["id"]))
        elif tries < MAIL_TRIES:
            await tx.execute("UPDATE mail_outbox SET state = 'queued', attempts = ?, next_try_ts = ?, error = ?"
                             " WHERE id = ?", (tries, now + 60 * 2 ** (tries - 1), error[:300], letter["id"]))
        else:
            await tx.execute("UPDATE mail_outbox SET state = 'failed', attempts = ?, error = ? WHERE id = ?",
                             (tries, error[:300], letter["id"]))


async def recover(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute("UPDATE mail_outbox SET state = 'queued' WHERE state = 'sending'")


async def recent(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT * FROM mail_outbox ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(r) for r in rows]


def callback_letter(req: dict[str, Any], tries: list[dict[str, Any]], closed: str, tz: ZoneInfo,
                    period: str = "2,5 часа") -> tuple[str, str]:
    """Subject and body of a letter about a request: contacted («Не надо перезванивать») or
    given up («перезвоните пациенту»), with every detail and the attempts."""
    def _when(ts: float | None) -> str:
        return datetime.fromtimestamp(ts, tz).strftime("%d.%m.%Y %H:%M:%S") if ts else "—"

    source = req["source_name"]
    if closed == cr.CLOSED_CONTACTED:
        subject = cr.contacted_subject(source)
        head = "Пациент соединён с администратором. Не надо перезванивать."
    else:
        subject = cr.give_up_subject(source)
        head = f"Робот не смог соединить пациента с клиникой за {period}. Пожалуйста, перезвоните пациенту."
    try:
        utm = json.loads(req.get("utm") or "{}")
    except ValueError:
        utm = {}
    lines = [
        head, "",
        f"Заявка №{req['id']} с {source}, поступила {_when(req['created_ts'])}",
        f"Пациент: {req['patient_name'] or '—'}",
        f"Телефон: {req['phone']}",
        f"Врач: {req['doctor'] or '—'}",
        f"Услуга: {req['service'] or '—'}",
        f"Желаемое время: {req['desired'] or '—'}",
        f"Комментарий: {req['comment'] or '—'}",
    ]
    if utm:
        lines.append("Метки: " + ", ".join(f"{k}={v}" for k, v in sorted(utm.items())))
    lines += ["", f"Попытки ({len(tries)}):"]
    for t in tries:
        who = f", администратор {t['admin_ext']}" if t["admin_ext"] else ""
        talk = f", разговор {t['talk_seconds']:.0f} с" if t["talk_seconds"] else ""
        lines.append(f"  {t['attempt']}. {_when(t['started_ts'])}{who}: "
                     f"{cr.OUTCOME_NAMES.get(t['outcome'], t['outcome'] or 'идёт')}{talk}")
    return subject, "\n".join(lines) + "\n"

"""Toll-fraud limits kept (issue #30): the clinic's policy (its settings, ``toll_*`` keys) and
what a refused call leaves behind: an audit line, a notice for the home page and, once an hour
per caller, a letter to the clinic's security addresses. The verdict itself is
``crm.rules.toll``'s."""

from __future__ import annotations

import json
from typing import Any

from crm import audit, clinic_settings, mail
from crm.db import Database
from crm.rules.toll import CallCounter, TollPolicy, policy_from, verdict

TRIP = "toll_refused"


async def policy(db: Database) -> TollPolicy:
    return policy_from(await clinic_settings.get_all(db))


async def security_emails(db: Database) -> tuple[str, ...]:
    value = await clinic_settings.get(db, "security_emails") or []
    return tuple(str(a) for a in value if isinstance(a, str))


async def record_trip(db: Database, caller: str, number: str, reason: str, now: float) -> None:
    """A refused outgoing call: the audit line and (once an hour per caller) the letter, in one
    transaction."""
    to = await security_emails(db)
    who = f"телефон {caller}" if caller else "робот или переадресация"
    async with db.transaction() as tx:
        await audit.record_in(tx, who, TRIP, now, object_kind="call", object_id=number[:40], detail=reason[:200])
        if to:
            body = (f"АТС отказала в исходящем звонке на {number[:40]}: {reason}.\n"
                    f"Кто звонил: {who}.\nЕсли это не сотрудник клиники, смените пароль телефона в «Настройки → Телефония».")
            await mail.enqueue(tx, f"toll:{caller or '-'}:{int(now // 3600)}", None, to,
                               "Защита АТС: отказ в звонке", body, now)


async def check(db: Database, number: str, caller: str, now: float, counter: CallCounter | None = None,
                concurrent: int = 0) -> str:
    """The check of every outgoing call (the dialplan's, over FastAGI, and the robots'): the
    refusal's reason, recorded, or "" when it may go."""
    reason = verdict(number, caller, await policy(db), counter or CallCounter(), now, concurrent)
    if reason:
        await record_trip(db, caller, number, reason, now)
    return reason


async def recent_trips(db: Database, since: float, limit: int = 5) -> list[dict[str, Any]]:
    """The home page's notice: the last refusals."""
    rows = await db.fetchall("SELECT at_ts, actor, object_id, detail FROM audit_log WHERE action = ? AND at_ts >= ?"
                             " ORDER BY at_ts DESC LIMIT ?", (TRIP, since, limit))
    return [dict(r) for r in rows]


async def save_policy(db: Database, values: dict[str, Any], emails: tuple[str, ...], now: float, *, actor: str,
                      user_id: int | None) -> None:
    async with db.transaction() as tx:
        for key, value in [*values.items(), ("security_emails", list(emails))]:
            await tx.execute("INSERT INTO clinic_settings (key, value) VALUES (?, ?)"
                             " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                             (key, json.dumps(value, ensure_ascii=False)))
        await audit.record_in(tx, actor, "toll_policy", now, user_id=user_id, object_kind="settings",
                              detail=json.dumps(values, ensure_ascii=False)[:200])

"""The audit trail: who opened which patient card, recording, export or API record, and who
changed appointments, users and settings. Append-only (the table's triggers refuse UPDATE and
DELETE); the director reads it at /audit."""

from __future__ import annotations

from typing import Any

from crm.db import Database

# action -> what the audit page calls it
ACTIONS = {
    "login": "вход", "login_failed": "неудачный вход", "logout": "выход",
    "patient_view": "открыл карточку пациента", "patient_create": "создал пациента",
    "recording_play": "прослушал запись", "history_csv": "выгрузил историю (CSV)",
    "report_csv": "выгрузил отчёт (CSV)", "report_view": "открыл отчёт",
    "api_call_read": "API: прочитал звонок", "api_calls_list": "API: список звонков",
    "appointment_book": "записал на приём", "appointment_status": "изменил статус приёма",
    "user_create": "создал пользователя", "user_update": "изменил пользователя",
    "user_deactivate": "отключил пользователя", "settings_update": "изменил настройки",
    "escort_settings": "изменил настройки оповещений", "escort_call_now": "робот: позвонить сейчас",
    "audit_view": "открыл журнал",
    "provider_save": "изменил провайдера", "provider_delete": "удалил провайдера",
    "number_save": "изменил номер клиники", "number_delete": "удалил номер клиники",
    "queue_save": "изменил очередь", "queue_delete": "удалил очередь",
    "phone_save": "изменил телефон", "phone_delete": "удалил телефон", "phone_password": "сменил пароль телефона",
    "telephony_apply": "применил настройки телефонии",
}


async def record(db: Database, actor: str, action: str, now: float, *, user_id: int | None = None,
                 object_kind: str = "", object_id: Any = "", detail: str = "", address: str = "") -> None:
    async with db.transaction() as tx:
        await record_in(tx, actor, action, now, user_id=user_id, object_kind=object_kind,
                        object_id=object_id, detail=detail, address=address)


async def record_in(tx: Any, actor: str, action: str, now: float, *, user_id: int | None = None,
                    object_kind: str = "", object_id: Any = "", detail: str = "", address: str = "") -> None:
    """The same, inside the caller's transaction (the change and its trace commit together)."""
    await tx.execute(
        "INSERT INTO audit_log (at_ts, user_id, actor, action, object_kind, object_id, detail, address)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now, user_id, actor[:100], action, object_kind, str(object_id)[:64], detail[:500], address[:64]),
    )


async def entries(db: Database, since_ts: float, until_ts: float, *, user_id: int | None = None,
                  limit: int = 1000) -> list[dict[str, Any]]:
    where, params = ["at_ts >= ?", "at_ts < ?"], [since_ts, until_ts]
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    rows = await db.fetchall(
        f"SELECT at_ts, user_id, actor, action, object_kind, object_id, detail, address FROM audit_log"
        f" WHERE {' AND '.join(where)} ORDER BY at_ts DESC, id DESC LIMIT ?", [*params, limit])
    return [dict(r) for r in rows]

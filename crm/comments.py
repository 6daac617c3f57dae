"""Comments on calls (seed 001): caller type, topic, free text. Keyed by the call's linkedid
so a comment can be written while the call is live, later from the history, or on a manual
entry for a call to a mobile that bypassed the PBX."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from crm import contacts, phones
from crm.calls import iso
from crm.db import Database
from crm.identify import identify
from crm.rules.windows import COMMENT_LINK, comment_joins

CALLER_TYPES = {
    "wants_booking": "Пациент. Хочет записаться",
    "booked": "Пациент. Уже записан",
    "patient_question": "Пациент. Другой вопрос",
    "employee": "Сотрудник",
    "other": "Прочие и контрагенты",
}
GROUP = "group:"  # a clinic's own caller group: ``group:<id>``


async def caller_types(db: Database, *, with_retired: bool = False) -> dict[str, str]:
    """The built-in caller types and the clinic's own groups («Группы людей»)."""
    rows = await db.fetchall("SELECT id, name FROM caller_groups" + ("" if with_retired else " WHERE active = 1")
                             + " ORDER BY name")
    return CALLER_TYPES | {f"{GROUP}{r[0]}": r[1] for r in rows}


async def add_caller_group(db: Database, name: str, counts_for_stats: bool) -> None:
    name = " ".join(name.split())[:100]
    if not name or name in CALLER_TYPES.values():
        raise CommentError("Введите новое название группы")
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO caller_groups (name, counts_for_stats) VALUES (?, ?) ON CONFLICT (name)"
                         " DO UPDATE SET active = 1, counts_for_stats = excluded.counts_for_stats",
                         (name, int(counts_for_stats)))


async def retire_caller_group(db: Database, group_id: int) -> None:
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE caller_groups SET active = 0 WHERE id = ?", (group_id,))
        if cur.rowcount == 0:
            raise CommentError("Нет такой группы")
DEFAULT_TOPICS = ("Терапия", "Хирургия", "Имплантация", "Ортодонтия", "Гигиена", "Детская стоматология",
                  "Стоимость услуг", "Прочее")


class CommentError(ValueError):
    pass


def default_caller_type(kind: str, has_future_appointment: bool) -> str:
    """Employees and contractors are typed automatically (seed 001)."""
    if kind == "employee":
        return "employee"
    if kind == "contractor":
        return "other"
    return "booked" if has_future_appointment else "wants_booking"


async def topics(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT id, name FROM call_topics WHERE active = 1 ORDER BY name")
    return [dict(r) for r in rows]


async def retire_topic(db: Database, topic_id: int) -> None:
    """A topic no longer offered; the comments that named it keep it (seed 001's directory)."""
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE call_topics SET active = 0 WHERE id = ?", (topic_id,))
        if cur.rowcount == 0:
            raise CommentError("Нет такой темы разговора")


async def ensure_default_topics(db: Database) -> None:
    async with db.transaction() as tx:
        for name in DEFAULT_TOPICS:
            await tx.execute("INSERT OR IGNORE INTO call_topics (name) VALUES (?)", (name,))


async def add_topic(db: Database, name: str) -> None:
    name = name.strip()[:100]
    if not name:
        raise CommentError("Введите название темы")
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO call_topics (name) VALUES (?) ON CONFLICT (name) DO UPDATE SET active = 1",
            (name,),
        )


async def save_comment(
    db: Database, linkedid: str, *, caller_type: str, topic_id: int | None,
    patient_id: int | None, text: str, user_id: int | None, contractor_name: str = "",
) -> None:
    if caller_type not in await caller_types(db):
        raise CommentError("Выберите, кто звонил")
    # seed 001: «обязательно должны быть заполнены поля «Кто, тип» и «Тема разговора»» — for
    # every comment, the clinic's own groups too, so that every contact's statistics are right
    if topic_id is None:
        raise CommentError("Выберите тему разговора")
    if topic_id is not None and not await db.fetchone(
        "SELECT 1 FROM call_topics WHERE id = ?", (topic_id,)
    ):
        raise CommentError("Нет такой темы разговора")
    if patient_id is not None and not await db.fetchone(
        "SELECT 1 FROM patients WHERE id = ?", (patient_id,)
    ):
        raise CommentError("Нет такого пациента")
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO call_comments (linkedid, caller_type, topic_id, patient_id, text, user_id,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (linkedid) DO UPDATE SET"
            " caller_type = excluded.caller_type, topic_id = excluded.topic_id,"
            " patient_id = excluded.patient_id, text = excluded.text, user_id = excluded.user_id,"
            " updated_at = excluded.updated_at",
            (linkedid, caller_type, topic_id, patient_id, text.strip()[:4000], user_id, tx.stamp()),
        )
        await contacts.typed_by_hand(tx, linkedid, caller_type, contractor_name)


async def get_comment(db: Database, linkedid: str) -> dict[str, Any] | None:
    row = await db.fetchone(
        "SELECT cc.*, t.name AS topic FROM call_comments cc LEFT JOIN call_topics t ON t.id = cc.topic_id"
        " WHERE cc.linkedid = ?",
        (linkedid,),
    )
    return dict(row) if row else None


MANUAL_KINDS = {"comment": "Комментарий к разговору", "dialog": "Диалог"}
# where a «Диалог» took place (seed 004: a chat «скопированного из социальной сети»); "" in person
MANUAL_CHANNELS = ("", "Телефон (мимо АТС)", "WhatsApp", "Telegram", "ВКонтакте", "Одноклассники", "Instagram",
                   "Чат на сайте", "Электронная почта", "Другое")


async def add_manual_call(
    db: Database, *, direction: str, phone: str, started: datetime, minutes: float, user_id: int,
    kind: str = "dialog", link_window: float = COMMENT_LINK, channel: str = "",
) -> tuple[str, bool]:
    """A talk entered by hand: a «comment» joins the PBX call of its number and direction that
    started within ``link_window`` of the time typed (the nearest; seed 004), else it is stored
    like a call, marked manual (a comment joined to no call, or a «Диалог»). Returns the call's
    linkedid and whether it joined a call."""
    if direction not in ("incoming", "outgoing"):
        raise CommentError("Выберите направление вызова")
    if kind not in MANUAL_KINDS:
        raise CommentError("Выберите, что это было")
    if channel not in MANUAL_CHANNELS or (channel and kind != "dialog"):
        raise CommentError("Выберите, где был диалог, из списка")
    e164 = phones.normalize(phone)
    if e164 is None:
        raise CommentError("Неверный номер телефона")
    if not 0 <= minutes <= 600:
        raise CommentError("Неверная длительность")
    start_ts = started.timestamp()
    end_ts = start_ts + minutes * 60
    if kind == "comment":
        near = await db.fetchall(
            "SELECT linkedid, started_ts FROM calls WHERE phone_e164 = ? AND direction = ? AND source <> 'manual'"
            " AND started_ts BETWEEN ? AND ?", (e164, direction, start_ts - link_window, start_ts + link_window))
        joined = [r for r in near if comment_joins(start_ts, r[1], link_window)]
        if joined:
            return min(joined, key=lambda r: abs(r[1] - start_ts))[0], True
    linkedid = "manual-" + secrets.token_hex(8)
    who = identify(db, e164)
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO calls (linkedid, direction, call_type, caller_raw, callee_raw, phone_e164,"
            " answered_by_user, originated_by, started_at, answered_at, ended_at, talk_seconds,"
            " caller_kind, patient_id, source, created_at, started_ts, ended_ts, manual_kind, manual_channel)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'manual', ?, ?, ?, ?, ?)",
            (
                linkedid, direction, direction, e164 if direction == "incoming" else "",
                e164 if direction == "outgoing" else "", e164, user_id,
                user_id if direction == "outgoing" else None, _utc(start_ts), _utc(start_ts),
                _utc(end_ts), minutes * 60,
                who.kind, who.patient_id, tx.stamp(), start_ts, end_ts, kind, channel,
            ),
        )
        call_id = int(cur.lastrowid or 0)
        for cand in who.candidates:
            await tx.execute("INSERT INTO call_candidates (call_id, patient_id) VALUES (?, ?)", (call_id, cand.id))
    return linkedid, False


async def delete_unlinked_comment(db: Database, call_id: int) -> bool:
    """Seed 004: a comment that joined no call can be deleted (with its manual record), in one
    transaction; a real call or a «Диалог» never is. Returns whether one was deleted."""
    async with db.transaction() as tx:
        row = await (await tx.execute("SELECT linkedid FROM calls WHERE id = ? AND source = 'manual'"
                                      " AND manual_kind = 'comment'", (call_id,))).fetchone()
        if row is None:
            return False
        await tx.execute("DELETE FROM call_comments WHERE linkedid = ?", (row[0],))
        await tx.execute("DELETE FROM call_candidates WHERE call_id = ?", (call_id,))
        await tx.execute("DELETE FROM calls WHERE id = ?", (call_id,))
        return True


def _utc(ts: float) -> str:
    return iso(ts) or ""

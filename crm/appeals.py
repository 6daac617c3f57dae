"""«История обращений» (seed 004), the storage part: a period's contacts (calls, manual
dialogs, website requests) and the records they may have brought (appointments and
waiting-list entries made from 30 min before the period to 30 min after it), as the plain values
the pure ``crm.rules.appeals`` works on. A fixed number of set-based queries per page."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from crm import ad_channels, comments, schedule
from crm.db import Database
from crm.rules import appeal_actions, appeal_records
from crm.rules import appeals as ap
from crm.rules import callback as cr
from crm.rules.windows import APPOINTMENT_LINK, CRM_ACTION_LINK


async def contacts(db: Database, since: float, until: float, today: date, tz: ZoneInfo, *,
                   patient_id: int | None = None, counted_only: bool = True) -> list[ap.Contact]:
    """The period's contacts: calls (employees' and contractors' left out unless asked),
    requests, and patients' replies to messages; one patient's only when given."""
    return [*await _calls(db, since, until, patient_id, counted_only),
            *await _requests(db, since, until, today, tz, patient_id),
            *await _replies(db, since, until, patient_id)]


@dataclass(frozen=True)
class Narrowing:
    """Filters on contacts, applied before they are joined into обращения (the обращения of those
    contacts only): contact kind, «Кто, тип», topic, ad channel group and channel."""

    kinds: tuple[str, ...] = ()
    whos: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.kinds or self.whos or self.topics or self.groups or self.channels)


@dataclass
class Built:
    appeals: list[ap.Appeal]
    who_names: set[str]  # the «Кто, тип» and topics the contacts had (the filters' choices)
    topic_names: set[str]
    employees: set[str]


async def build(db: Database, since: float, until: float, today: date, tz: ZoneInfo, *,
                patient_id: int | None = None, narrow: Narrowing = Narrowing()) -> Built:
    """The period's обращения, live: contacts with their channel and «Кто, тип», narrowed,
    joined by client and clinic day, each with the records it brought and its success."""
    names = await comments.caller_types(db, with_retired=True)
    channel_rules = await ad_channels.rules(db)
    found = [ap.with_channel(c, channel_rules, caller_type=names.get(c.caller_type, c.caller_type))
             # seed 004 counts patients only; calls left out of the statistics (employees',
             # contractors') join when «Кто, тип» asks for their types, which alone then remain (#32)
             for c in await contacts(db, since, until, today, tz, patient_id=patient_id,
                                     counted_only=not narrow.whos)]
    if narrow.groups:
        found = [c for c in found if c.channel_group in narrow.groups]
    if narrow.channels:
        found = [c for c in found if c.channel in narrow.channels]
    if narrow.kinds:
        found = [c for c in found if c.kind in narrow.kinds]
    patients = {c.patient_id for c in found if c.patient_id is not None}
    # a contact that ends after the period still takes what followed it (records, actions)
    reach = max((c.ended for c in found), default=until)
    done = await actions(db, patients, since, max(until, reach))
    # an outgoing call followed by a CRM action within 15 min takes its type and automatic
    # comments (an administrator's type or comment wins)
    found = [appeal_actions.typed_by_action(c, done) for c in found]
    who_names = {c.caller_type for c in found if c.caller_type}
    topic_names = {c.topic for c in found if c.topic}
    if narrow.whos:
        found = [c for c in found if ap.who_matches(c.caller_type, narrow.whos)]
    if narrow.topics:
        found = [c for c in found if c.topic in narrow.topics]
    # the pure grouping and judging of a busy day take tens of milliseconds: beside the event
    # loop (the GIL is handed back every few ms), so that AMI events and commits never wait that long
    appeals = await asyncio.to_thread(ap.group, found, tz)
    changed = {a.appointment_id for a in done if a.appointment_id is not None and a.kind in ("moved", "status")}
    await asyncio.to_thread(ap.judge, appeals, await records(db, since, max(until, reach), patients, changed), done)
    return Built(appeals, who_names, topic_names, {c.employee for c in found if c.employee})


def _by_number(caller_kind: str) -> str:
    """An employee's or contractor's number types its call by itself (seed 001), as the card does."""
    return comments.default_caller_type(caller_kind, False) if caller_kind in ("employee", "contractor") else ""


def _period(alias: str, since: float, until: float, patient_id: int | None) -> tuple[str, list[object]]:
    """`` AND <alias>.patient_id = ?`` when one patient is asked for, with the period's params."""
    if patient_id is None:
        return "", [since, until]
    return f" AND {alias}.patient_id = ?", [since, until, patient_id]


async def _calls(db: Database, since: float, until: float, patient_id: int | None,
                 counted_only: bool) -> list[ap.Contact]:
    who, params = _period("c", since, until, patient_id)
    rows = await db.fetchall(
        "SELECT c.id, c.linkedid, c.direction, c.call_type, c.started_ts, c.ended_ts, c.phone_e164, c.patient_id,"
        " c.caller_kind, c.counterpart_id, c.wait_seconds, c.talk_seconds, c.recording, c.source,"
        " COALESCE(u.full_name, u.login, c.answered_by_ext) AS employee, COALESCE(t.name, '') AS topic,"
        " COALESCE(cc.caller_type, '') AS caller_type, COALESCE(cc.text, '') AS comment,"
        " COALESCE(n.ad_channel, '') AS channel, c.did, c.manual_kind, c.manual_channel FROM calls c"
        " LEFT JOIN users u ON u.id = COALESCE(c.answered_by_user, c.originated_by)"
        " LEFT JOIN call_comments cc ON cc.linkedid = c.linkedid LEFT JOIN call_topics t ON t.id = cc.topic_id"
        " LEFT JOIN clinic_numbers n ON n.did = c.did"
        f" WHERE c.started_ts >= ? AND c.started_ts < ? AND c.direction IN ('incoming', 'outgoing'){who}"
        + (" AND c.counts_for_stats = 1" if counted_only else "") + " ORDER BY c.started_ts, c.id",
        params,
    )
    # by position: a month at 1M calls is 80 000 rows, and a row's lookup by name scans its columns
    return [ap.Contact(
        id=f"call:{call_id}", kind=(ap.COMMENT if manual_kind == "comment" else ap.DIALOG)
        if source == "manual" else direction,
        started=started, ended=max(ended, started), phone=phone or "",
        patient_id=patient_id, guardian_id=counterpart_id if caller_kind == "guardian" else None,
        missed=call_type in ("missed", "outgoing_unanswered"), employee=employee or "",
        # a «Диалог» in a messenger: the messenger is its service (a «Внешние сервисы» rule finds it)
        topic=topic, caller_type=caller_type or _by_number(caller_kind), channel=manual_channel or channel,
        comment=comment, did=did or "", service=manual_channel or channel,
        call_id=call_id, recording=bool(recording), wait=wait or 0.0, duration=talk or 0.0)
        for (call_id, _, direction, call_type, started, ended, phone, patient_id, caller_kind, counterpart_id, wait,
             talk, recording, source, employee, topic, caller_type, comment, channel, did, manual_kind,
             manual_channel) in rows]


async def _requests(db: Database, since: float, until: float, today: date, tz: ZoneInfo,
                    patient_id: int | None) -> list[ap.Contact]:
    who, params = _period("r", since, until, patient_id)
    rows = await db.fetchall(
        "SELECT r.id, r.created_ts, r.closed_ts, r.state, r.phone, r.patient_id, r.source_name, r.comment,"
        " r.service, r.doctor, r.created_by, r.utm FROM callback_requests r WHERE r.created_ts >= ? AND r.created_ts < ?"
        f"{who} ORDER BY r.created_ts, r.id", params)
    out = []
    for r in rows:
        created = datetime.fromtimestamp(r["created_ts"], tz).date()
        status = cr.request_status(r["state"], created, today)
        out.append(ap.Contact(
            id=f"request:{r['id']}", kind=ap.REQUEST_DIALOG if r["created_by"] is not None else ap.REQUEST,
            started=r["created_ts"], ended=r["created_ts"],
            phone=r["phone"], patient_id=r["patient_id"], missed=r["state"] == "open",
            overdue=status == "просрочена", channel=r["source_name"], service=r["source_name"], utm=_utm(r["utm"]),
            comment=" · ".join(x for x in (r["service"], r["doctor"], r["comment"]) if x)))
    return out


async def _replies(db: Database, since: float, until: float, patient_id: int | None) -> list[ap.Contact]:
    """Patients' replies to the robot's messages (seed 004: «написал … а потом позвонил»)."""
    who, params = _period("a", since, until, patient_id)
    rows = await db.fetchall(
        "SELECT l.id, l.ts, l.detail, a.patient_id, (SELECT e164 FROM patient_phones ph WHERE ph.patient_id"
        " = a.patient_id ORDER BY ph.id LIMIT 1) AS phone FROM escort_log l JOIN appointments a ON a.id ="
        f" l.appointment_id WHERE l.what = 'reply' AND l.ts >= ? AND l.ts < ?{who} ORDER BY l.ts, l.id", params)
    return [ap.Contact(id=f"reply:{r['id']}", kind=ap.MESSAGE, started=r["ts"], ended=r["ts"], phone=r["phone"] or "",
                       patient_id=r["patient_id"], comment=r["detail"]) for r in rows]


# a waiting-list entry closed by an appointment: one made for its patient while it was open
_WAIT_BOOKED = ("EXISTS (SELECT 1 FROM appointments a WHERE a.patient_id = w.patient_id AND a.created_at >= w.created_at"
                " AND w.closed_at IS NOT NULL AND a.created_at <= w.closed_at)")


async def hovers(db: Database, records: list[ap.Record], tz: ZoneInfo) -> dict[tuple[str, int], appeal_records.Hover]:
    """The records' hover (seed 004's two columns), read now: the current status is today's."""
    def when(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz).strftime("%d.%m.%Y %H:%M")

    def iso(text: str) -> str:
        return when(datetime.fromisoformat(text).timestamp())

    out: dict[tuple[str, int], appeal_records.Hover] = {}
    appointments = sorted({r.id for r in records if r.kind == "appointment"})
    waiting = sorted({r.id for r in records if r.kind == "waiting"})
    if appointments:
        for r in await db.fetchall(
                "SELECT a.id, a.starts_ts, a.created_ts, a.status, a.price, d.full_name, d.specialty FROM appointments a"
                f" JOIN doctors d ON d.id = a.doctor_id WHERE a.id IN ({','.join('?' * len(appointments))})", appointments):
            out["appointment", r["id"]] = appeal_records.appointment_hover(
                starts=when(r["starts_ts"]), doctor=" ".join(x for x in (r["specialty"], r["full_name"]) if x),
                created=when(r["created_ts"]), status=r["status"], price=r["price"] or 0.0)
    if waiting:
        for r in await db.fetchall(
                f"SELECT w.id, w.specialty, w.note, w.created_at, w.closed_at, {_WAIT_BOOKED} AS booked FROM waiting_list w"
                f" WHERE w.id IN ({','.join('?' * len(waiting))})", waiting):
            out["waiting", r["id"]] = appeal_records.waiting_hover(
                wanted=" ".join(x for x in (r["specialty"], r["note"]) if x), created=iso(r["created_at"]),
                closed=iso(r["closed_at"]) if r["closed_at"] else None, booked=bool(r["booked"]))
    return out


async def records(db: Database, since: float, until: float, patients: set[int],
                  changed: set[int] | None = None) -> list[ap.Record]:
    """Appointments and waiting-list entries of these patients made in the period's windows, and
    the appointments ``changed`` (cancelled or moved) in it whenever they were made."""
    if not patients:
        return []
    lo, hi = since - APPOINTMENT_LINK, until + APPOINTMENT_LINK
    marks = ",".join("?" * len(patients))
    ids = sorted(patients)
    extra = sorted(changed or ())
    rows = await db.fetchall(
        f"SELECT id, patient_id, created_ts, status, starts_ts, price FROM appointments WHERE (patient_id IN ({marks})"
        " AND created_ts >= ? AND created_ts <= ?)" + (f" OR id IN ({','.join('?' * len(extra))})" if extra else ""),
        (*ids, lo, hi, *extra))
    out = [ap.Record(r["id"], "appointment", r["patient_id"], r["created_ts"], appeal_records.appointment_state(r["status"]),
                     r["price"] or 0.0) for r in rows]
    rows = await db.fetchall(
        f"SELECT w.id, w.patient_id, w.created_at, w.closed_at, {_WAIT_BOOKED} AS booked"
        f" FROM waiting_list w WHERE w.patient_id IN ({marks})", ids)
    for r in rows:
        created = datetime.fromisoformat(r["created_at"]).timestamp()
        if not lo <= created <= hi:
            continue
        state = ap.WAIT_OPEN if r["closed_at"] is None else ap.WAIT_BOOKED if r["booked"] else ap.WAIT_CLOSED
        out.append(ap.Record(r["id"], "waiting", r["patient_id"], created, state))
    return out


async def patients_info(db: Database, ids: set[int]) -> dict[int, dict[str, object]]:
    """Names, and the first appointment's creation (a patient with none before an обращение is
    «Первичный»)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await db.fetchall(
        "SELECT p.id, p.last_name, p.first_name, p.middle_name, (SELECT MIN(a.created_ts) FROM appointments a"
        f" WHERE a.patient_id = p.id) AS first_booked FROM patients p WHERE p.id IN ({marks})", sorted(ids))
    return {r["id"]: {"name": " ".join(x for x in (r["last_name"], r["first_name"], r["middle_name"]) if x),
                      "first_booked": r["first_booked"]} for r in rows}


def _utm(text: str) -> tuple[tuple[str, str], ...]:
    try:
        tags = json.loads(text or "{}")
    except ValueError:
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in tags.items())) if isinstance(tags, dict) else ()


async def actions(db: Database, patients: set[int], since: float, until: float) -> list[ap.Action]:
    """What was done in the CRM for these patients in the period (and the 15 minutes after it)."""
    rows = await schedule.actions(db, patients, since, until + CRM_ACTION_LINK)
    return [ap.Action(r["at_ts"], r["kind"], r["patient_id"], r["appointment_id"], r["detail"]) for r in rows]

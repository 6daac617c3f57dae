"""«История обращений» in the panel (seed 004): every contact of a period (calls, manual dialogs,
website requests) either one by one («Без группировки») or joined into обращения («По
обращениям»: one client, one clinic day), with what each brought (the main result's symbol,
its success), totals on up to two levels, filters, a patient's own history, and CSV. For users
with the history right (the calls' personal data and recordings are in it)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import appeals as store
from crm import comments
from crm.dates import parse_day
from crm.rules import appeals as ap
from pbx.services import SERVICES
from web.common import clinic_tz, csv_response, csv_safe, int_or_none, local_today, trace
from web.history import duration, require_history

LEVELS = {
    "employee": ("Сотрудник", lambda a: next((c.employee for c in a.contacts if c.employee), "—")),
    "success": ("Успешность", lambda a: a.success),
    "topic": ("Тема", lambda a: next((c.topic for c in a.contacts if c.topic), "—")),
    "channel": ("Рекламный канал", lambda a: next((c.channel for c in a.contacts if c.channel), "—")),
    "who": ("Кто, тип", lambda a: next((c.caller_type for c in a.contacts if c.caller_type), "—")),
    "day": ("День", lambda a: a.day.strftime("%d.%m.%Y")),
}
STATE_NAMES = {ap.FUTURE: "будущий приём", ap.DONE: "приём состоялся", ap.VOID: "приём отменён / неявка",
               ap.WAIT_OPEN: "лист ожидания открыт", ap.WAIT_BOOKED: "лист ожидания закрыт записью",
               ap.WAIT_CLOSED: "лист ожидания закрыт"}
MAX_DAYS = 366


def setup_appeals_page(app: web.Application) -> None:
    app.router.add_get("/appeals", appeals_page)
    app.router.add_get("/appeals.csv", appeals_csv)


def label(c: ap.Contact) -> str:
    """The hover text of a contact's symbol: «Входящий. Пропущенный», «Заявка. Актуальная»…"""
    name = ap.KIND_NAMES[c.kind]
    if c.kind in (ap.REQUEST, ap.REQUEST_DIALOG):
        return f"{name}. " + ("Просроченная" if c.overdue else "Актуальная" if c.missed else "Закрытая")
    if c.missed:
        return f"{name}. " + ("Пропущенный" if c.kind == ap.INCOMING else "Без ответа")
    return name


async def _report(request: web.Request) -> dict[str, Any]:
    await require_history(request)
    services = request.app[SERVICES]
    tz, today = clinic_tz(request), local_today(request)
    q = request.query
    patient = int_or_none(q.get("patient")) if q.get("patient") else None
    try:
        since_day = parse_day(q["since"]) if q.get("since") else (date(2000, 1, 1) if patient else today)
        until_day = parse_day(q["until"]) if q.get("until") else today
    except ValueError:
        raise web.HTTPBadRequest(text="Неверная дата") from None
    if until_day < since_day or ((until_day - since_day).days >= MAX_DAYS and patient is None):
        raise web.HTTPBadRequest(text="Неверный период (не длиннее года)")
    since = datetime.combine(since_day, time(0), tz).timestamp()
    until = datetime.combine(until_day + timedelta(days=1), time(0), tz).timestamp()
    contacts = await store.contacts(services.db, since, until, today, tz, patient_id=patient)
    names = await comments.caller_types(services.db, with_retired=True)
    contacts = [dataclasses.replace(c, caller_type=names.get(c.caller_type, c.caller_type)) for c in contacts]
    kinds = [k for k in q.getall("kind", []) if k in ap.KIND_NAMES]
    if kinds:
        contacts = [c for c in contacts if c.kind in kinds]
    employee = q.get("employee", "")
    appeals = ap.group(contacts, tz)
    patients = {c.patient_id for c in contacts if c.patient_id is not None}
    ap.judge(appeals, await store.records(services.db, since, until, patients))
    successes = [s for s in q.getall("success", []) if s in ap.SUCCESSES]
    if successes:
        appeals = [a for a in appeals if a.success in successes]
    if employee:
        appeals = [a for a in appeals if any(c.employee == employee for c in a.contacts)]
    info = await store.patients_info(services.db, patients)
    levels = [x for x in (q.get("level1", ""), q.get("level2", "")) if x in LEVELS]
    return {
        "appeals": appeals, "info": info, "tz": tz, "view": q.get("view", "grouped"),
        "q": {"since": since_day.isoformat(), "until": until_day.isoformat(), "kinds": kinds, "successes": successes,
              "employee": employee, "level1": q.get("level1", ""), "level2": q.get("level2", ""),
              "patient": patient or ""},
        "totals": ap.totals(appeals, [LEVELS[x][1] for x in levels]) if levels else [],
        "level_names": [LEVELS[x][0] for x in levels], "levels": {k: v[0] for k, v in LEVELS.items()},
        "kind_names": ap.KIND_NAMES, "success_names": ap.SUCCESSES, "state_names": STATE_NAMES,
        "employees": sorted({c.employee for c in contacts if c.employee}),
        "label": label, "duration": duration, "query": request.query_string,
    }


def summary(a: ap.Appeal) -> ap.Contact:
    """An обращение's row in «По обращениям»: its first contact, with what any of its contacts
    says (who, topic, employee, channel, comment, the recording) and the waits and talks summed."""
    def first(attr: str) -> Any:
        return next((getattr(c, attr) for c in a.contacts if getattr(c, attr)), getattr(a.first, attr))

    with_recording = next((c for c in a.contacts if c.recording), None)
    return dataclasses.replace(
        a.first, caller_type=first("caller_type"), topic=first("topic"), employee=first("employee"),
        channel=first("channel"), comment=first("comment"), recording=with_recording is not None,
        call_id=with_recording.call_id if with_recording else a.first.call_id,
        wait=sum(c.wait for c in a.contacts), duration=sum(c.duration for c in a.contacts))


def primary(a: ap.Appeal, info: dict[int, dict[str, Any]]) -> bool:
    """«Первичный»: a patient with no appointment made before this обращение."""
    p = info.get(a.patient_id) if a.patient_id is not None else None
    return p is not None and (p["first_booked"] is None or p["first_booked"] >= a.first.started)


@aiohttp_jinja2.template("appeals.html")
async def appeals_page(request: web.Request) -> dict[str, Any]:
    data = await _report(request)
    data["primary"] = primary
    data["summary"] = summary
    return data


async def appeals_csv(request: web.Request) -> web.Response:
    data = await _report(request)
    await trace(request, "appeals_csv", "report", "appeals", request.query_string[:200])
    tz, info = data["tz"], data["info"]
    rows: list[list[object]] = [["Дата", "Кто", "Тип обращения", "Тема", "Сотрудник", "Успешность",
                                 "Рекламный канал", "Комментарий", "Ожидание", "Длительность", "Контактов"]]
    for a in data["appeals"]:
        who = info[a.patient_id]["name"] if a.patient_id in info else a.first.phone
        row = summary(a)
        rows.append([datetime.fromtimestamp(a.first.started, tz).strftime("%d.%m.%Y %H:%M"), csv_safe(str(who)),
                     label(a.first), csv_safe(row.topic), csv_safe(row.employee), a.success, csv_safe(row.channel),
                     csv_safe(row.comment), duration(row.wait), duration(row.duration), len(a.contacts)])
    return csv_response(rows, "appeals.csv")

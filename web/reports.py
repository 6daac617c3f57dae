"""The call reports page (seed 000) and its CSV: administrators' efficiency, calls per day,
missed calls processing, call tags. For the director and the settings administrator (one
administrator's efficiency is not for colleagues to browse). Filters: the clinic's days,
the clinic number (DID), the employee, the tag (and the tag group for the tags report).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from crm import callbacks, directory, reports
from crm.call_listing import CallFilter
from crm.dates import parse_day
from crm.rules import callback_report
from pbx.services import SERVICES
from web import charts
from web.api import call_filter
from web.common import (
    SETTINGS_ROLES,
    clinic_tz,
    csv_response,
    csv_safe,
    int_or_none,
    local_today,
    now_ts,
    trace,
    viewer,
)

REPORTS = {
    "efficiency": "Эффективность администраторов",
    "days": "Количество звонков по дням",
    "missed": "Обработка пропущенных звонков",
    "tags": "Метки звонков",
    "callbacks": "Обратные звонки",
}


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}".replace(".", ",") + " %"


async def _parse(request: web.Request) -> tuple[str, CallFilter, dict[str, str], int | None]:
    me = await viewer(request)
    if me.role not in SETTINGS_ROLES:
        raise web.HTTPForbidden(text="Отчёты доступны директору и администратору настроек")
    report = request.query.get("report", "efficiency")
    if report not in REPORTS:
        raise web.HTTPBadRequest(text="Нет такого отчёта")
    today = local_today(request)
    q = {
        "since": request.query.get("since") or (today - timedelta(days=6)).isoformat(),
        "until": request.query.get("until") or today.isoformat(),
        "did": request.query.get("did", ""), "employee": request.query.get("employee", ""),
        "tag": request.query.get("tag", ""), "group": request.query.get("group", ""),
    }
    try:
        since, until = parse_day(q["since"]), parse_day(q["until"])
        if until < since or (until - since).days >= reports.MAX_DAYS:
            raise ValueError
        f = call_filter({**q, "limit": "1000"}, clinic_tz(request))
    except ValueError:
        raise web.HTTPBadRequest(text="Неверный период или фильтр (период не длиннее года)") from None
    group = int_or_none(q["group"]) if q["group"] else None
    return report, f, q, group


async def _data(request: web.Request, report: str, f: CallFilter, group: int | None,
                q: dict[str, str]) -> dict[str, Any]:
    db = request.app[SERVICES].db
    tz = clinic_tz(request)
    if report == "efficiency":
        rows = await reports.admin_efficiency(db, f, tz)
        return {"rows": rows, "chart": charts.bars([(r.name, r.booked, r.total) for r in rows],
                                                   title="Звонки администраторов", first="Записано",
                                                   second="Всего звонков")}
    if report == "days":
        days = await reports.calls_per_day(db, f, tz)
        return {"rows": days, "chart": calls_chart(days)}
    if report == "missed":
        total, days = await reports.missed_processing(db, f, tz, now_ts(request))
        return {"total": total, "days": days}
    if report == "callbacks":
        since = datetime.combine(parse_day(q["since"]), time(0), tz).timestamp()
        until = datetime.combine(parse_day(q["until"]) + timedelta(days=1), time(0), tz).timestamp()
        cb_days, cb_total = callback_report.per_day(await callbacks.report_rows(db, since, until), tz)
        return {"cb_days": cb_days, "cb_total": cb_total}
    return {"tags": await reports.tag_counts(db, f, tz, group)}


def calls_chart(days: list[reports.DayRow]) -> Markup:
    """Calls per day as stacked columns (the reports and the home page)."""
    return charts.stacked_columns(
        [(d.day.strftime("%d.%m"), {"incoming": d.incoming, "missed": d.missed, "outgoing": d.outgoing,
                                    "outgoing_unanswered": d.outgoing_unanswered}) for d in days],
        title="Звонки по дням")


@aiohttp_jinja2.template("reports.html")
async def reports_page(request: web.Request) -> dict[str, Any]:
    report, f, q, group = await _parse(request)
    db = request.app[SERVICES].db
    return {
        "report": report, "reports": REPORTS, "q": q, **(await _data(request, report, f, group, q)),
        "dids": await directory.clinic_numbers(db),
        "employees": await directory.employees(db),
        "tag_labels": await directory.tag_labels(db),
        "groups": await directory.tag_groups_with_deleted(db),
        "hms": hms, "pct": pct, "query": request.query_string,
    }


async def reports_csv(request: web.Request) -> web.Response:
    report, f, q, group = await _parse(request)
    await trace(request, "report_csv", "report", report, request.query_string[:200])
    data = await _data(request, report, f, group, q)
    rows: list[list[object]] = []
    if report == "efficiency":
        rows.append(["Сотрудник", "Всего звонков", "Записано", "Конверсия, %", "Время разговоров",
                    "Среднее время", "Пропущено", "Пропущено, %", "Исходящих без ответа",
                    "Без ответа, %"])
        for r in data["rows"]:
            rows.append([csv_safe(r.name), r.total, r.booked, pct(r.conversion), hms(r.talk_seconds),
                        hms(r.average_talk), r.missed, pct(r.missed_share), r.outgoing_unanswered,
                        pct(r.unanswered_share)])
    elif report == "days":
        rows.append(["День", "Всего", "Входящие", "Пропущенные", "Исходящие", "Исходящие без ответа",
                    "Записано"])
        for r in data["rows"]:
            rows.append([r.day.isoformat(), r.total, r.incoming, r.missed, r.outgoing,
                        r.outgoing_unanswered, r.booked])
    elif report == "missed":
        rows.append(["День", "Пропущено", "Перезвонили", "Дозвонился сам", "Обработано, %",
                    "Ждут (до 24 ч)", "Необработанные", "Медиана до обработки, мин"])
        for day, s in [*data["days"], ("Итого", data["total"])]:
            rows.append([str(day), s.missed, s.called_back, s.got_through, pct(s.processed_share),
                        s.pending, s.unprocessed,
                        "" if s.median_minutes is None else round(s.median_minutes)])
    elif report == "callbacks":
        rows.append(["День", "Заявок", "Соединены", "Соединены, %", "Уже записан", "Связались иначе",
                     "Не дозвонились", "Закрыты вручную", "В работе", "Попыток", "Медиана до соединения, мин"])
        for d in [*data["cb_days"], data["cb_total"]]:
            rows.append([d.day.isoformat() if d.day else "Итого", d.requests, d.contacted, pct(d.contacted_share),
                         d.already_booked, d.other_means, d.gave_up, d.cancelled, d.open, d.attempts,
                         "" if d.median_minutes is None else round(d.median_minutes)])
    else:
        rows.append(["Группа", "Метка", "Звонков", "Доля, %"])
        for name, items in data["tags"]["groups"].items():
            for item in items:
                rows.append([csv_safe(name), csv_safe(item["label"]), item["calls"], pct(item["share"])])
    return csv_response(rows, f"report-{report}.csv")

"""``/audit``: the audit trail for the director (and the settings admin), with a CSV."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import audit, directory
from crm.dates import parse_day
from pbx.services import SERVICES
from web.common import (
    clinic_tz,
    csv_response,
    csv_safe,
    int_or_none,
    local_today,
    require_settings,
    trace,
)


async def _entries(request: web.Request) -> tuple[dict[str, str], list[dict[str, Any]]]:
    await require_settings(request)
    tz = clinic_tz(request)
    today = local_today(request)
    try:
        since = parse_day(request.query.get("since") or today.isoformat())
        until = parse_day(request.query.get("until") or today.isoformat())
    except ValueError:
        raise web.HTTPBadRequest(text="Неверная дата") from None
    start = datetime.combine(since, time(0), tz).timestamp()
    end = datetime.combine(until + timedelta(days=1), time(0), tz).timestamp()
    user = int_or_none(request.query.get("user"))
    rows = await audit.entries(request.app[SERVICES].db, start, end, user_id=user, limit=5000)
    for r in rows:
        r["when"] = datetime.fromtimestamp(r["at_ts"], tz).strftime("%d.%m.%Y %H:%M:%S")
        r["what"] = audit.ACTIONS.get(r["action"], r["action"])
    return {"since": since.isoformat(), "until": until.isoformat(), "user": str(user or "")}, rows


@aiohttp_jinja2.template("audit.html")
async def audit_page(request: web.Request) -> dict[str, Any]:
    q, rows = await _entries(request)
    await trace(request, "audit_view", "audit", "", f"{q['since']}..{q['until']}")
    users = await directory.employees(request.app[SERVICES].db)
    return {"q": q, "rows": rows, "users": users,
            "query": request.query_string}


async def audit_csv(request: web.Request) -> web.Response:
    q, rows = await _entries(request)
    await trace(request, "audit_view", "audit", "", f"CSV {q['since']}..{q['until']}")
    out: list[list[object]] = [["Время", "Кто", "Действие", "Объект", "Подробности", "Адрес"]]
    for r in rows:
        out.append([r["when"], csv_safe(r["actor"]), r["what"], f"{r['object_kind']} {r['object_id']}".strip(),
                    csv_safe(r["detail"]), r["address"]])
    return csv_response(out, "audit.csv")

"""The first page an administrator sees: what needs doing now. Missed calls of the last 24
hours nobody has returned yet (seed 000: a missed call must be processed within a day), today's
calls in figures, today's appointments by status, the tasks due, and the telephony's health."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from crm import reports, schedule, toll
from crm.call_listing import PROCESSING_WINDOW, CallFilter, list_calls
from crm.calls import iso
from pbx.services import SERVICES, health
from pbx.workers.recordings import usage
from web.common import SETTINGS_ROLES, clinic_tz, local_time, local_today, now_ts, viewer
from web.history import row_view
from web.reports import calls_chart


def to_call_back(pending: list[dict[str, Any]], tz: ZoneInfo) -> list[dict[str, Any]]:
    """One row per number (its latest call, how many, the first call's deadline), the most
    urgent first. Hidden numbers cannot be called back and are left out."""
    rows: dict[str, dict[str, Any]] = {}
    for c in sorted(pending, key=lambda c: c["started_at"]):
        if not c["phone_e164"]:
            continue
        first = rows.get(c["phone_e164"])
        deadline = local_time((datetime.fromisoformat(c["started_at"]) + timedelta(seconds=PROCESSING_WINDOW)).isoformat(), tz)
        rows[c["phone_e164"]] = row_view(c, tz) | {
            "times": first["times"] + 1 if first else 1,
            "deadline": first["deadline"] if first else deadline,
            "first": first["first"] if first else c["started_at"],
        }
    return sorted(rows.values(), key=lambda r: r["first"])


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    me = await viewer(request)
    services = request.app[SERVICES]
    db, tz, now = services.db, clinic_tz(request), now_ts(request)
    today = local_today(request)
    next_midnight = datetime.combine(today + timedelta(days=1), time(0), tz).timestamp()
    status = await health(services)
    if status["db_failing_since"]:
        status["db_failing_since_local"] = local_time(str(status["db_failing_since"]), tz)
    page: dict[str, Any] = {"health": status, "can_history": me.history in ("read", "edit"),
                            "today": today.isoformat(), "today_label": today.strftime("%d.%m.%Y"),
                            "no_call": request.query.get("no_call") == "1"}
    if page["can_history"]:
        # the same rule as the history's «необработанные»: no answered call with the number since
        pending = await list_calls(db, CallFilter(since=iso(now - PROCESSING_WINDOW), missed_state="missed_unprocessed",
                                                  limit=1000))
        page["to_call_back"] = to_call_back(pending, tz)
        # the last two weeks from the reports' daily aggregates: the chart, and today's figures
        first = datetime.combine(today - timedelta(days=13), time(0), tz).timestamp()
        rows = await reports.calls_per_day(db, CallFilter(since=iso(first), until=iso(next_midnight)), tz)
        page["calls_today"] = rows[-1]
        page["chart"] = calls_chart(rows)
    appointments = await schedule.day_appointments(db, today, tz)
    by_status: dict[str, int] = {}
    for a in appointments:
        by_status[a["status_label"]] = by_status.get(a["status_label"], 0) + 1
    page["appointments"] = {"total": len(appointments), "by_status": by_status}
    page["tasks"] = [t for t in await schedule.open_tasks(db) if t["due_date"] <= today.isoformat()]
    page["tomorrow"] = (today + timedelta(days=1)).isoformat()
    if me.role in SETTINGS_ROLES:  # outgoing calls the toll-fraud limits refused in the last day
        page["toll_trips"] = [t | {"at": datetime.fromtimestamp(t["at_ts"], tz).strftime("%d.%m %H:%M")}
                              for t in await toll.recent_trips(db, now - 86400)]
    if me.role in SETTINGS_ROLES:  # what the recordings take, for whoever runs the box
        u = await asyncio.to_thread(usage, services.settings.recordings_dir)
        page["recordings"] = {
            "files": u.files, "gb": f"{u.bytes / 1e9:.2f}".replace(".", ","),
            "oldest": datetime.fromtimestamp(u.oldest, tz).strftime("%d.%m.%Y") if u.oldest else "",
            "keep_days": services.settings.recordings_keep_days,
        }
    return page

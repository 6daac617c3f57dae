"""The first page an administrator sees: what needs doing now. Missed calls of the last 24
hours nobody has returned yet (seed 000: a missed call must be processed within a day), today's
calls in figures, today's appointments by status, the tasks due, and the telephony's health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import reports, schedule
from crm.calls import CallFilter, list_calls
from pbx.app import SERVICES, health
from web.common import clinic_tz, local_time, local_today, now_ts, viewer
from web.history import row_view


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    me = await viewer(request)
    services = request.app[SERVICES]
    db, tz, now = services.db, clinic_tz(request), now_ts(request)
    today = local_today(request)
    midnight = datetime.combine(today, datetime.min.time(), tz).timestamp()
    page: dict[str, Any] = {"health": await health(services), "can_history": me.history in ("read", "edit"),
                            "today": today.isoformat()}
    if page["can_history"]:
        # the same rule as the history's «необработанные»: no answered call with the number since
        pending = await list_calls(db, CallFilter(since=_iso(now - 86400), missed_state="missed_unprocessed",
                                                  limit=50))
        by_number: dict[str, dict[str, Any]] = {}
        for c in reversed(pending):  # oldest first: its deadline is the one that matters
            entry = by_number.get(c["phone_e164"])
            if entry is None and c["phone_e164"]:
                deadline = local_time((datetime.fromisoformat(c["started_at"]) + timedelta(days=1)).isoformat(), tz)
                by_number[c["phone_e164"]] = row_view(c, tz) | {"deadline": deadline[5:16], "times": 1}
            elif entry is not None:
                entry.update(row_view(c, tz) | {"deadline": entry["deadline"], "times": entry["times"] + 1})
        page["to_call_back"] = sorted(by_number.values(), key=lambda e: e["deadline"])
        day = CallFilter(since=_iso(midnight), until=_iso(midnight + 86400))
        rows = await reports.calls_per_day(db, day, tz)
        page["calls_today"] = rows[0] if rows else reports.DayRow(today)
    appointments = await schedule.day_appointments(db, today, tz)
    by_status: dict[str, int] = {}
    for a in appointments:
        by_status[a["status_label"]] = by_status.get(a["status_label"], 0) + 1
    page["appointments"] = {"total": len(appointments), "by_status": by_status}
    page["tasks"] = [t for t in await schedule.open_tasks(db) if t["due_date"] <= today.isoformat()]
    page["tomorrow"] = (today + timedelta(days=1)).isoformat()
    return page

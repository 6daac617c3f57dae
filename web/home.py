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

from crm import callbacks, reports, schedule, tasks, toll
from crm.call_listing import PROCESSING_WINDOW, CallFilter, calls_by_ids, unprocessed_missed
from crm.calls import iso
from crm.rules import callback as cr
from pbx.services import SERVICES, health
from pbx.workers.recordings import usage
from web.common import SETTINGS_ROLES, clinic_tz, local_time, local_today, now_ts, viewer
from web.history import row_view
from web.reports import calls_chart

HOME_ROWS = 30  # the most urgent numbers to call back shown here; the history lists them all


def to_call_back(pending: list[tuple[int, str, str]], shown: int = HOME_ROWS) -> tuple[list[tuple[int, str, int]], int]:
    """One row per number from (id, number, started_at) of the unprocessed missed calls: its
    latest call's id, its first call's start (the deadline runs from it), how many; the most
    urgent first, the first ``shown`` of them, and how many numbers there are. Hidden numbers
    cannot be called back and are left out."""
    numbers: dict[str, tuple[str, int, int]] = {}  # number: first call's start, latest call's id, how many
    for call_id, number, started_at in sorted(pending, key=lambda c: c[2]):
        if number:
            first, _, times = numbers.get(number, (started_at, call_id, 0))
            numbers[number] = (first, call_id, times + 1)
    urgent = sorted(numbers.values())[:shown]
    return [(latest, first, times) for first, latest, times in urgent], len(numbers)


async def call_back_rows(db: Any, tz: ZoneInfo, since: str) -> tuple[list[dict[str, Any]], int]:
    urgent, total = to_call_back(await unprocessed_missed(db, since))
    calls = await calls_by_ids(db, [latest for latest, _, _ in urgent])
    return [row_view(calls[latest], tz) | {
        "times": times, "first": first,
        "deadline": local_time((datetime.fromisoformat(first) + timedelta(seconds=PROCESSING_WINDOW)).isoformat(), tz),
    } for latest, first, times in urgent if latest in calls], total


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
        page["to_call_back"], page["to_call_back_total"] = await call_back_rows(db, tz, iso(now - PROCESSING_WINDOW))
        page["since_24h"] = datetime.fromtimestamp(now - PROCESSING_WINDOW, tz).date().isoformat()
        # the last two weeks from the reports' daily aggregates: the chart, and today's figures
        first = datetime.combine(today - timedelta(days=13), time(0), tz).timestamp()
        rows = await reports.calls_per_day(db, CallFilter(since=iso(first), until=iso(next_midnight)), tz)
        page["calls_today"] = rows[-1]
        page["chart"] = calls_chart(rows)
    by_status = await schedule.day_status_counts(db, today, tz)
    page["appointments"] = {"total": sum(by_status.values()), "by_status": by_status}
    page["tasks"] = [t for t in await tasks.open_tasks(db) if t["due_date"] <= today.isoformat()]
    page["no_letters"] = cr.letters_unaddressed(await callbacks.settings(db))
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

"""The reports as they were computed before the daily aggregates: row by row over the period's
calls, straight from the SQL rules. Kept as the reference the aggregates must agree with
(tests/unit/test_report_aggregates.py), never used by the server."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from crm.call_listing import ANSWERED_AFTER, CONVERTED, PROCESSING_WINDOW, CallFilter, conditions
from crm.db import Database
from crm.reports import AdminRow, DayRow, MissedSummary, _local_days, percent


def _one(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _stats_where(f: CallFilter) -> tuple[str, list[Any]]:
    where, params = conditions(f)
    return " AND ".join([*where, "c.counts_for_stats = 1"]), params


async def admin_efficiency(db: Database, f: CallFilter) -> list[AdminRow]:
    """One row per employee: what they answered or placed (``answered_by_user`` is the
    phone's holder at that moment, also for outgoing calls) and the calls they missed. A
    ring-all call someone answered, or a linear queue's call a later phone answered, is
    nobody's miss; a call nobody answered is missed by every phone that rang."""
    where, params = _stats_where(f)
    answered = _one("c.direction = 'incoming'")
    outgoing = _one("c.call_type = 'outgoing'")
    unanswered = _one("c.call_type = 'outgoing_unanswered'")
    taken = await db.fetchall(
        f"SELECT c.answered_by_user AS user_id, SUM({answered}) AS answered,"
        f" SUM({outgoing}) AS outgoing, SUM({unanswered}) AS outgoing_unanswered,"
        f" SUM({_one(CONVERTED)}) AS booked, SUM(c.talk_seconds) AS talk_seconds,"
        f" SUM({_one('c.answered_at IS NOT NULL')}) AS talked"
        f" FROM calls c WHERE {where} AND c.answered_by_user IS NOT NULL"
        " AND c.call_type IN ('incoming', 'outgoing', 'outgoing_unanswered')"
        " GROUP BY c.answered_by_user",
        params,
    )
    missed = await db.fetchall(
        "SELECT l.user_id, COUNT(DISTINCT c.id) AS missed FROM calls c"
        f" JOIN call_legs l ON l.call_id = c.id WHERE {where} AND c.call_type = 'missed'"
        " AND l.missed = 1 AND l.user_id IS NOT NULL GROUP BY l.user_id",
        params,
    )
    by_user: dict[int, dict[str, Any]] = {}
    for r in taken:
        by_user[r["user_id"]] = dict(r)
    for r in missed:
        by_user.setdefault(r["user_id"], {})["missed"] = r["missed"]
    if f.user_id is not None:  # the filter is "calls they took part in": show them alone
        by_user = {k: v for k, v in by_user.items() if k == f.user_id}
    if not by_user:
        return []
    marks = ", ".join("?" for _ in by_user)
    names = {r[0]: r[1] or r[2] for r in await db.fetchall(
        f"SELECT id, full_name, login FROM users WHERE id IN ({marks})", list(by_user))}
    rows = [
        AdminRow(
            user_id=uid, name=names.get(uid, f"#{uid}"), answered=int(v.get("answered") or 0),
            missed=int(v.get("missed") or 0), outgoing=int(v.get("outgoing") or 0),
            outgoing_unanswered=int(v.get("outgoing_unanswered") or 0),
            booked=int(v.get("booked") or 0), talk_seconds=float(v.get("talk_seconds") or 0.0),
            talked=int(v.get("talked") or 0),
        )
        for uid, v in by_user.items()
    ]
    return sorted(rows, key=lambda r: (-r.total, r.name))


async def calls_per_day(db: Database, f: CallFilter, tz: ZoneInfo) -> list[DayRow]:
    """Each day of the period (empty days too): incoming answered, missed, outgoing with and
    without an answer, and how many ended in an appointment."""
    where, params = _stats_where(f)
    rows = await db.fetchall(
        f"SELECT c.started_ts, c.call_type, {_one(CONVERTED)} AS booked FROM calls c WHERE {where}"
        " AND c.call_type IN ('incoming', 'missed', 'outgoing', 'outgoing_unanswered')",
        params,
    )
    days = {d: DayRow(d) for d in _local_days(f, tz)}
    for r in rows:
        d = datetime.fromtimestamp(r["started_ts"], tz).date()
        row = days.setdefault(d, DayRow(d))
        setattr(row, r["call_type"], getattr(row, r["call_type"]) + 1)
        row.booked += r["booked"]
    return [days[d] for d in sorted(days)]


async def missed_processing(db: Database, f: CallFilter, tz: ZoneInfo,
                            now: float) -> tuple[MissedSummary, list[tuple[date, MissedSummary]]]:
    """How many patients whose calls were missed were reached within 24 hours, by whom, and
    how fast (the same rule as the history's «обработанные / необработанные»)."""
    where, params = _stats_where(f)
    rows = await db.fetchall(
        f"SELECT c.started_ts, (SELECT MIN(r.started_ts) {ANSWERED_AFTER}) AS back_ts,"
        f" (SELECT r.direction {ANSWERED_AFTER} ORDER BY r.started_ts LIMIT 1) AS back_direction"
        f" FROM calls c WHERE {where} AND c.call_type = 'missed' ORDER BY c.started_ts",
        params,
    )
    total = MissedSummary()
    per_day: dict[date, MissedSummary] = {}
    for r in rows:
        d = datetime.fromtimestamp(r["started_ts"], tz).date()
        day = per_day.setdefault(d, MissedSummary())
        for s in (total, day):
            s.missed += 1
            if r["back_ts"] is not None:
                if r["back_direction"] == "outgoing":
                    s.called_back += 1
                else:
                    s.got_through += 1
                s.minutes_to_process.append((r["back_ts"] - r["started_ts"]) / 60)
            elif now - r["started_ts"] < PROCESSING_WINDOW:
                s.pending += 1
            else:
                s.unprocessed += 1
    return total, sorted(per_day.items())


async def tag_counts(db: Database, f: CallFilter, group_id: int | None = None) -> dict[str, Any]:
    """Calls per tag (a call with several tags counts for each), grouped by tag group; a
    deleted group's tags stay (seed 000). «Другая метка» texts are counted apart. Also the
    calls whose pop-up was closed without a tag (the history's dash)."""
    where, params = _stats_where(f)
    group_sql, group_params = ("", []) if group_id is None else (" AND t.group_id = ?", [group_id])
    rows = await db.fetchall(
        "SELECT t.group_id, g.name AS group_name, g.deleted_at, t.tag_id, t.label,"
        " COUNT(DISTINCT c.id) AS n FROM call_tags t JOIN calls c ON c.linkedid = t.linkedid"
        f" LEFT JOIN tag_groups g ON g.id = t.group_id WHERE {where}{group_sql}"
        " GROUP BY t.group_id, g.name, g.deleted_at, t.tag_id, t.label"
        " ORDER BY g.name, n DESC, t.label",
        [*params, *group_params],
    )
    tagged = await db.fetchone(
        "SELECT COUNT(DISTINCT c.id) FROM call_tags t JOIN calls c ON c.linkedid = t.linkedid"
        f" WHERE {where}{group_sql}",
        [*params, *group_params],
    )
    dismissed = await db.fetchone(
        "SELECT COUNT(*) FROM tag_prompts p JOIN calls c ON c.linkedid = p.linkedid"
        f" WHERE {where} AND p.state <> 'saved'",
        params,
    )
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["tag_id"] is None:
            name = "Другая метка"
        else:
            name = (r["group_name"] or "Без группы") + (" (группа удалена)" if r["deleted_at"] else "")
        groups.setdefault(name, []).append({"label": r["label"], "calls": r["n"]})
    tagged_calls = int(tagged[0]) if tagged else 0
    for items in groups.values():
        for item in items:
            item["share"] = percent(item["calls"], tagged_calls)
    return {"groups": groups, "tagged_calls": tagged_calls,
            "closed_without_tag": 0 if group_id is not None else int(dismissed[0] if dismissed else 0)}

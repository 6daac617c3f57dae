"""The reports' daily aggregates, stored: ``report_days`` holds each clinic day's totals per
(tag, employee, DID) key, so that a year's report sums a few thousand rows instead of reading a
million calls (bench/scale_pages.py).

They stay exact by invalidation, not by trusting every writer: the triggers of migration 0021
mark, in the writing transaction, the span of time whose calls a write may change (a call, its
legs, tags, tag pop-up, candidates; an appointment near a patient's calls; a phone added to a
card). ``refresh`` turns the marks into clinic days and recomputes each of them from the rows
with the same SQL rules as the history (``CONVERTED``, ``ANSWERED_AFTER``) and the pure
``crm.rules.call_stats.day_totals``, one day per transaction so that a call being saved never
waits behind a long rebuild. Every report refreshes before it reads; the server also refreshes
in the background so that a report seldom has more than today to do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from crm.call_listing import ANSWERED_AFTER, CONVERTED
from crm.db import Database
from crm.rules import call_stats as rules
from crm.rules.call_stats import LISTS, NUMBERS, CallFacts, Totals

log = logging.getLogger(__name__)


async def refresh(db: Database, tz: ZoneInfo) -> int:
    """Recompute every clinic day a write has touched since the last refresh. Returns how many."""
    if not await db.fetchone(  # the common case, without taking the write lock
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM report_dirty) OR EXISTS (SELECT 1 FROM report_days_todo)"
            " OR NOT EXISTS (SELECT 1 FROM report_meta WHERE key = 'tz' AND value = ?)", (tz.key,)):
        return 0
    async with db.transaction(opportunistic=True) as tx:
        row = await (await tx.execute("SELECT value FROM report_meta WHERE key = 'tz'")).fetchone()
        if row is None or row[0] != tz.key:  # days cut in another zone: all of them again
            await tx.execute("DELETE FROM report_days")
            await tx.execute("INSERT INTO report_dirty SELECT MIN(started_ts), MAX(started_ts) FROM calls"
                             " HAVING COUNT(*) > 0")
            await tx.execute("INSERT INTO report_meta (key, value) VALUES ('tz', ?)"
                             " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (tz.key,))
        spans = await (await tx.execute("SELECT DISTINCT from_ts, to_ts FROM report_dirty")).fetchall()
        days = {d.isoformat() for a, b in spans for d in rules.days_touched(a, b, tz)}
        for d in days:
            await tx.execute("INSERT OR IGNORE INTO report_days_todo (day) VALUES (?)", (d,))
        await tx.execute("DELETE FROM report_dirty")
    done = 0
    while True:
        todo = await db.fetchall("SELECT day FROM report_days_todo ORDER BY day LIMIT 1")
        if not todo:
            return done
        async with db.transaction(opportunistic=True) as tx:
            await recompute_day(tx, date.fromisoformat(todo[0][0]), tz)
            await tx.execute("DELETE FROM report_days_todo WHERE day = ?", (todo[0][0],))
        done += 1


async def recompute_day(tx: Any, day: date, tz: ZoneInfo) -> None:
    """Replace one clinic day's rows by its totals computed from the stored calls."""
    start, end = rules.day_bounds(day, tz)
    span = "c.started_ts >= ? AND c.started_ts < ? AND c.counts_for_stats = 1"
    calls = await (await tx.execute(
        "SELECT c.id, c.started_ts, c.did, c.call_type, c.direction, c.answered_by_user, c.originated_by,"
        f" c.talk_seconds, c.answered_at IS NOT NULL, {CONVERTED},"
        f" CASE WHEN c.call_type = 'missed' THEN (SELECT MIN(r.started_ts) {ANSWERED_AFTER}) END,"
        f" CASE WHEN c.call_type = 'missed' THEN (SELECT r.direction {ANSWERED_AFTER}"
        " ORDER BY r.started_ts LIMIT 1) END"
        f" FROM calls c WHERE {span}", (start, end))).fetchall()
    legs: dict[int, tuple[set[int], set[int]]] = {}
    for call_id, user_id, missed in await (await tx.execute(
            "SELECT l.call_id, l.user_id, l.missed FROM call_legs l JOIN calls c ON c.id = l.call_id"
            f" WHERE {span} AND l.user_id IS NOT NULL", (start, end))).fetchall():
        rung, missing = legs.setdefault(call_id, (set(), set()))
        rung.add(user_id)
        if missed:
            missing.add(user_id)
    tags: dict[int, list[tuple[int | None, int | None, str]]] = {}
    for call_id, group_id, tag_id, label in await (await tx.execute(
            "SELECT c.id, t.group_id, t.tag_id, t.label FROM call_tags t JOIN calls c ON c.linkedid = t.linkedid"
            f" WHERE {span}", (start, end))).fetchall():
        tags.setdefault(call_id, []).append((group_id, tag_id, label))
    dismissed = dict(await (await tx.execute(
        "SELECT c.id, COUNT(*) FROM tag_prompts p JOIN calls c ON c.linkedid = p.linkedid"
        f" WHERE {span} AND p.state <> 'saved' GROUP BY c.id", (start, end))).fetchall())
    facts = []
    for (call_id, started, did, call_type, direction, answered_by, originated_by, talk, talked, booked,
         back_ts, back_direction) in calls:
        rung, missing = legs.get(call_id, (set(), set()))
        facts.append(CallFacts(
            started_ts=started, did=did, call_type=call_type, direction=direction, answered_by=answered_by,
            originated_by=originated_by, talk_seconds=talk, talked=bool(talked), booked=bool(booked),
            leg_users=frozenset(rung), missed_users=frozenset(missing), back_ts=back_ts,
            back_direction=back_direction, tags=tuple(tags.get(call_id, ())),
            dismissed=int(dismissed.get(call_id, 0))))
    await tx.execute("DELETE FROM report_days WHERE day = ?", (day.isoformat(),))
    columns = ("tag", "user_id", "day", "did", *NUMBERS, *LISTS)
    sql = (f"INSERT INTO report_days ({', '.join(columns)})"
           f" VALUES ({', '.join('?' for _ in columns)})")
    await tx.executemany(sql, [(tag, user, day.isoformat(), did, *(getattr(t, n) for n in NUMBERS),
                                *(json.dumps(getattr(t, n)) for n in LISTS))
                               for (did, tag, user), t in rules.day_totals(facts).items()])


@dataclass(frozen=True)
class StatsFilter:
    """A report's filter, in clinic days (inclusive)."""

    first: date
    last: date
    did: str = ""
    user_id: int | None = None
    tag: str = ""


async def read(db: Database, f: StatsFilter, tz: ZoneInfo, columns: tuple[str, ...], *,
               per_user: bool = False) -> list[tuple[str, int, Totals]]:
    """(day, user, totals) of the filter's rows, after a refresh. ``per_user``: the rows of each
    employee (the efficiency report; only the filter's employee when one is chosen), else the
    rows of the filter's employee or of everyone. Only ``columns`` are read and filled. While
    another process holds the database (no write possible), the days stored so far are read."""
    try:
        await refresh(db, tz)
    except db.BUSY as exc:  # locked: the health check reports it; the report still reads
        log.warning("report aggregates not refreshed: %s", exc)
    where = ["tag = ?", "day >= ?", "day <= ?"]
    params: list[Any] = [f.tag, f.first.isoformat(), f.last.isoformat()]
    if per_user and f.user_id is None:
        where.append("user_id <> ?")
        params.append(rules.ANYONE)
    else:
        where.append("user_id = ?")
        params.append(f.user_id if f.user_id is not None else rules.ANYONE)
    if f.did:
        where.append("did = ?")
        params.append(f.did)
    rows = await db.fetchall(
        f"SELECT day, user_id, {', '.join(columns)} FROM report_days WHERE {' AND '.join(where)}", params)
    out = []
    for r in rows:
        t = Totals()
        for name in columns:
            setattr(t, name, json.loads(r[name]) if name in LISTS else r[name])
        out.append((r["day"], r["user_id"], t))
    return out

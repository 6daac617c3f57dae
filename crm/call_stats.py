"""The reports' daily aggregates, stored: ``report_days`` holds each clinic day's totals per
(tag, employee, DID) key, so that a year's report sums a few thousand rows instead of reading a
million calls (bench/scale_pages.py).

They stay exact by invalidation, not by trusting every writer: the triggers of migration 0021
mark, in the writing transaction, the span of time whose calls a write may change (a call, its
legs, tags, tag pop-up, candidates; an appointment near a patient's calls; a phone added to a
card). ``refresh`` turns the marks into clinic days and recomputes each of them from the rows
with the same SQL rules as the history (``CONVERTED``, ``ANSWERED_AFTER``) and the pure
``crm.rules.call_stats.day_totals``, read beside the writer and swapped in by a short
transaction, so that a call being saved never waits behind a rebuild. Every report refreshes
before it reads; the server also refreshes in the background so that a report seldom has more
than today to do.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from crm.beside import Computer
from crm.call_listing import ANSWERED_AFTER, CONVERTED
from crm.db import Database, Reader
from crm.rules import call_stats as rules
from crm.rules.call_stats import LISTS, NUMBERS, CallFacts, Totals

log = logging.getLogger(__name__)


async def refresh(db: Database, tz: ZoneInfo, computer: Computer | None = None) -> int:
    """Recompute every clinic day a write has touched since the last refresh. Returns how many.

    Each day is read from one snapshot and its totals computed beside the one writer (on the
    reading connection, or in ``computer``: the background pass's process, crm.beside); only the
    swap (delete the day's rows, insert the new ones) is a write,
    a few milliseconds, so a call being saved never waits behind a rebuild. A day marked again
    while it was read has a new token by then, and the stale totals are dropped."""
    if not await db.fetchone(  # the common case, without taking the write lock
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM report_dirty) OR EXISTS (SELECT 1 FROM report_days_todo)"
            " OR NOT EXISTS (SELECT 1 FROM report_meta WHERE key = 'tz' AND value = ?)", (tz.key,)):
        return 0
    await _take_marks(db, tz)
    done, tried = 0, set()
    while True:
        todo = [(d, t) for d, t in await db.fetch_tuples("SELECT day, token FROM report_days_todo ORDER BY day")
                if d not in tried]
        if not todo:
            return done
        day, token = todo[0]
        tried.add(day)  # marked again meanwhile: the next pass (or the one that marked it) stores it
        rows = await (computer or db).read(functools.partial(day_rows, day=date.fromisoformat(day), tz=tz))
        async with db.transaction(opportunistic=True) as tx:
            cur = await tx.execute("DELETE FROM report_days_todo WHERE day = ? AND token = ?", (day, token))
            if cur.rowcount:
                await tx.execute("DELETE FROM report_days WHERE day = ?", (day,))
                await tx.executemany(_INSERT, rows)
        done += 1


async def _take_marks(db: Database, tz: ZoneInfo) -> None:
    """Turn the written spans into clinic days to recompute, each with a fresh token."""
    token = secrets.randbits(62)
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
        await tx.executemany("INSERT INTO report_days_todo (day, token) VALUES (?, ?)"
                             " ON CONFLICT (day) DO UPDATE SET token = excluded.token",
                             [(d, token) for d in sorted(days)])
        await tx.execute("DELETE FROM report_dirty")


_COLUMNS = ("tag", "user_id", "day", "did", *NUMBERS, *LISTS)
_INSERT = f"INSERT INTO report_days ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


def day_rows(reader: Reader, day: date, tz: ZoneInfo) -> list[tuple[Any, ...]]:
    """One clinic day's ``report_days`` rows, computed from the stored calls (one snapshot)."""
    start, end = rules.day_bounds(day, tz)
    span = "c.started_ts >= ? AND c.started_ts < ? AND c.counts_for_stats = 1"
    calls = reader.fetch_tuples(
        "SELECT c.id, c.started_ts, c.did, c.call_type, c.direction, c.answered_by_user, c.originated_by,"
        f" c.talk_seconds, c.answered_at IS NOT NULL, {CONVERTED},"
        f" CASE WHEN c.call_type = 'missed' THEN (SELECT MIN(r.started_ts) {ANSWERED_AFTER}) END,"
        f" CASE WHEN c.call_type = 'missed' THEN (SELECT r.direction {ANSWERED_AFTER}"
        " ORDER BY r.started_ts LIMIT 1) END"
        f" FROM calls c WHERE {span}", (start, end))
    legs: dict[int, tuple[set[int], set[int]]] = {}
    for call_id, user_id, missed in reader.fetch_tuples(
            "SELECT l.call_id, l.user_id, l.missed FROM call_legs l JOIN calls c ON c.id = l.call_id"
            f" WHERE {span} AND l.user_id IS NOT NULL", (start, end)):
        rung, missing = legs.setdefault(call_id, (set(), set()))
        rung.add(user_id)
        if missed:
            missing.add(user_id)
    tags: dict[int, list[tuple[int | None, int | None, str]]] = {}
    for call_id, group_id, tag_id, label in reader.fetch_tuples(
            "SELECT c.id, t.group_id, t.tag_id, t.label FROM call_tags t JOIN calls c ON c.linkedid = t.linkedid"
            f" WHERE {span}", (start, end)):
        tags.setdefault(call_id, []).append((group_id, tag_id, label))
    dismissed = dict(reader.fetch_tuples(
        "SELECT c.id, COUNT(*) FROM tag_prompts p JOIN calls c ON c.linkedid = p.linkedid"
        f" WHERE {span} AND p.state <> 'saved' GROUP BY c.id", (start, end)))
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
    return [(tag, user, day.isoformat(), did, *(getattr(t, n) for n in NUMBERS),
             *(json.dumps(getattr(t, n)) for n in LISTS))
            for (did, tag, user), t in rules.day_totals(facts).items()]


@dataclass(frozen=True)
class StatsFilter:
    """A report's filter, in clinic days (inclusive)."""

    first: date
    last: date
    did: str = ""
    user_id: int | None = None
    tag: str = ""


async def read(db: Database, f: StatsFilter, tz: ZoneInfo, columns: tuple[str, ...], *,
               per_user: bool = False, recent: tuple[str, date] | None = None) -> list[tuple[str, int, Totals]]:
    """(day, user, totals) of the filter's rows, after a refresh. ``per_user``: the rows of each
    employee (the efficiency report; only the filter's employee when one is chosen), else the
    rows of the filter's employee or of everyone. Only ``columns`` are read and filled; a list
    column named in ``recent`` only from its day on (a year's lists are most of the decoding).
    While another process holds the database (no write possible), the days stored so far are read."""
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
    since = recent[1].isoformat() if recent is not None else ""
    for r in rows:
        t = Totals()
        for name in columns:
            if recent is not None and name == recent[0] and r["day"] < since:
                continue
            setattr(t, name, json.loads(r[name]) if name in LISTS else r[name])
        out.append((r["day"], r["user_id"], t))
    return out

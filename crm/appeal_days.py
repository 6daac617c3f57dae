"""«История обращений» kept by clinic day (migration 0023): a day's обращения as the live
computation builds them, stored as JSON with their facets, so that a month's page reads a few
dozen rows and decodes only the days it shows instead of grouping every contact again.

Exact by forgetting: the triggers of migration 0023 delete, in the writing transaction, every
stored day a write may change, and move an epoch on; a day is stored only if no write came
between the reads it was computed from and the store (``save`` compares the epoch under the
write lock). A day computed while its requests could still fall overdue (seven days) is valid on
the day it was computed only.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm import appeals as store
from crm.db import Database
from crm.rules import appeals as ap
from crm.rules import call_stats

SETTLED_DAYS = 8  # a request open for 7 full days is overdue: a day this old no longer changes by itself


def settled(day: date, computed_for: date) -> bool:
    """Whether what was computed for ``day`` on ``computed_for`` holds on every later date."""
    return (computed_for - day).days > SETTLED_DAYS


async def epoch(db: Database) -> int:
    row = await db.fetchone("SELECT epoch FROM appeal_meta WHERE id = 1")
    return int(row[0]) if row else 0


async def load(db: Database, first: date, last: date, tz: ZoneInfo,
               today: date) -> dict[date, tuple[list[ap.Facet], str]]:
    """The stored days of the period still valid today: (facets, the обращения's JSON)."""
    rows = await db.fetchall("SELECT day, tz, computed_for, facets, appeals FROM appeal_days"
                             " WHERE day >= ? AND day <= ?", (first.isoformat(), last.isoformat()))
    out = {}
    for r in rows:
        day, computed_for = date.fromisoformat(r["day"]), date.fromisoformat(r["computed_for"])
        if r["tz"] == tz.key and (computed_for == today or settled(day, computed_for)):
            out[day] = (decode_facets(r["facets"], day), r["appeals"])
    return out


async def save(db: Database, day: date, tz: ZoneInfo, today: date, facets: list[ap.Facet], appeals: str,
               seen_epoch: int) -> bool:
    """Store a day computed from reads made at ``seen_epoch``; not if a write came since."""
    start, end = call_stats.day_bounds(day, tz)
    async with db.transaction() as tx:
        row = await (await tx.execute("SELECT epoch FROM appeal_meta WHERE id = 1")).fetchone()
        if row is None or row[0] != seen_epoch:
            return False
        await tx.execute(
            "INSERT INTO appeal_days (day, tz, start_ts, end_ts, computed_for, facets, appeals)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET tz = excluded.tz,"
            " start_ts = excluded.start_ts, end_ts = excluded.end_ts, computed_for = excluded.computed_for,"
            " facets = excluded.facets, appeals = excluded.appeals",
            (day.isoformat(), tz.key, start, end, today.isoformat(), encode_facets(facets), appeals))
    return True


def encode_facets(facets: list[ap.Facet]) -> str:
    return json.dumps([[f.success, f.employee, f.topic, f.channel, f.who, f.employees, f.caller_types, f.topics,
                        f.contacts] for f in facets], ensure_ascii=False)


def decode_facets(text: str, day: date) -> list[ap.Facet]:
    return [ap.Facet(day, s, e, t, c, w, tuple(es), tuple(cts), tuple(ts), n)
            for s, e, t, c, w, es, cts, ts, n in json.loads(text)]


_CONTACT = [f.name for f in dataclasses.fields(ap.Contact)]
_RECORD = [f.name for f in dataclasses.fields(ap.Record)]


def encode_appeals(appeals: list[ap.Appeal]) -> str:
    def one(a: ap.Appeal) -> list[Any]:
        main = a.records.index(a.main) if a.main is not None and a.main in a.records else None
        return [[[getattr(c, n) for n in _CONTACT] for c in a.contacts],
                [[getattr(r, n) for n in _RECORD] for r in a.records],
                main, a.success, None if main is not None or a.main is None else [getattr(a.main, n) for n in _RECORD]]
    return json.dumps([one(a) for a in appeals], ensure_ascii=False)


def decode_appeals(text: str, day: date) -> list[ap.Appeal]:
    out = []
    for contacts, records, main, success, lone_main in json.loads(text):
        cs = [ap.Contact(**dict(zip(_CONTACT, values, strict=True)) | {"utm": tuple(tuple(p) for p in values[
            _CONTACT.index("utm")])}) for values in contacts]
        rs = [ap.Record(*values) for values in records]
        chosen = rs[main] if main is not None else ap.Record(*lone_main) if lone_main is not None else None
        out.append(ap.Appeal(day, cs, rs, chosen, success))
    return out


async def warm(db: Database, first: date, last: date, today: date, tz: ZoneInfo) -> int:
    """Compute and store the days of ``first``..``last`` not stored (or no longer valid), newest
    first, one at a time (the background pass; a page then reads what is stored). Returns how many."""
    rows = await db.fetchall("SELECT day, tz, computed_for FROM appeal_days WHERE day >= ? AND day <= ?",
                             (first.isoformat(), last.isoformat()))
    valid = {date.fromisoformat(r[0]) for r in rows if r[1] == tz.key and (
        r[2] == today.isoformat() or settled(date.fromisoformat(r[0]), date.fromisoformat(r[2])))}
    done = 0
    for day in [last - timedelta(days=i) for i in range((last - first).days + 1)]:
        if day not in valid:
            await _compute(db, day, today, tz)
            done += 1
    return done


async def _compute(db: Database, day: date, today: date, tz: ZoneInfo) -> tuple[list[ap.Facet], list[ap.Appeal]]:
    seen = await epoch(db)
    start, end = call_stats.day_bounds(day, tz)
    built = (await store.build(db, start, end, today, tz)).appeals
    facets = [ap.facet_of(a) for a in built]
    await save(db, day, tz, today, facets, encode_appeals(built), seen)
    return facets, built


@dataclass
class Period:
    """A period's обращения from the stored days (and the days computed now): their facets in
    order, each with its day and place, and the обращения themselves decoded on demand."""

    facets: list[tuple[ap.Facet, date, int]] = field(default_factory=list)
    who_names: set[str] = field(default_factory=set)
    topic_names: set[str] = field(default_factory=set)
    employees: set[str] = field(default_factory=set)
    texts: dict[date, str] = field(default_factory=dict)
    decoded: dict[date, list[ap.Appeal]] = field(default_factory=dict)

    @classmethod
    def of(cls, built: store.Built) -> Period:
        """A period built live (narrowed, or one patient's): nothing to decode."""
        out = cls(who_names=built.who_names, topic_names=built.topic_names, employees=built.employees)
        for a in built.appeals:
            day = out.decoded.setdefault(a.day, [])
            out.facets.append((ap.facet_of(a), a.day, len(day)))
            day.append(a)
        return out

    def by_day(self, refs: list[tuple[date, int]]) -> Iterator[list[ap.Appeal]]:
        """The обращения of ``refs`` a day at a time, each day let go once given (a year's CSV
        then holds one day in memory, not a million обращения)."""
        for day, group in itertools.groupby(refs, key=lambda ref: ref[0]):
            yield self.appeals(list(group))
            self.decoded.pop(day, None)

    def appeals(self, refs: list[tuple[date, int]]) -> list[ap.Appeal]:
        out = []
        for day, index in refs:
            if day not in self.decoded:
                self.decoded[day] = decode_appeals(self.texts.pop(day), day)
            out.append(self.decoded[day][index])
        return out


async def period(db: Database, first: date, last: date, today: date, tz: ZoneInfo) -> Period:
    """Every обращение of the clinic days ``first``..``last``: stored days as they are, the
    others computed live (``crm.appeals.build`` for that day alone) and stored."""
    stored = await load(db, first, last, tz, today)
    out = Period()
    for day in [first + timedelta(days=i) for i in range((last - first).days + 1)]:
        if day in stored:
            facets, out.texts[day] = stored[day]
        else:
            facets, out.decoded[day] = await _compute(db, day, today, tz)
        for index, f in enumerate(facets):
            out.facets.append((f, day, index))
            out.who_names.update(f.caller_types)
            out.topic_names.update(f.topics)
            out.employees.update(f.employees)
    return out

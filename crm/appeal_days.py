"""«История обращений» kept by clinic day (migration 0023): a day's обращения as the live
computation builds them, stored as JSON, and one row of facets each (``appeal_facets``), so that
a month's page reads its facets' rows and decodes only the days it shows instead of grouping
every contact again.

Exact by forgetting: the triggers of migration 0023 delete, in the writing transaction, every
stored day a write may change, and move an epoch on; a day is stored only if no write came
between the reads it was computed from and the store (``save`` compares the epoch under the
write lock). A day computed while its requests could still fall overdue (seven days) is valid on
the date it was computed only. A day whose stored обращения changed between reading its facets
and reading them is computed again for the page.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm import appeals as store
from crm.db import Database
from crm.rules import appeals as ap
from crm.rules import call_stats

log = logging.getLogger(__name__)
SETTLED_DAYS = 8  # a request open for 7 full days is overdue: a day this old no longer changes by itself


def settled(day: date, computed_for: date) -> bool:
    """Whether what was computed for ``day`` on ``computed_for`` holds on every later date."""
    return (computed_for - day).days > SETTLED_DAYS


def valid(day: date, zone: str, computed_for: date, tz: ZoneInfo, today: date) -> bool:
    return zone == tz.key and (computed_for == today or settled(day, computed_for))


async def epoch(db: Database) -> int:
    row = await db.fetchone("SELECT epoch FROM appeal_meta WHERE id = 1")
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Stored:
    version: int
    size: int
    names: list[list[str]]  # «Кто, тип», topics, employees


async def stored_days(db: Database, first: date, last: date, tz: ZoneInfo, today: date) -> dict[date, Stored]:
    """The stored days of the period still valid today."""
    rows = await db.fetchall("SELECT day, tz, computed_for, version, size, names FROM appeal_days"
                             " WHERE day >= ? AND day <= ?", (first.isoformat(), last.isoformat()))
    return {date.fromisoformat(r[0]): Stored(r[3], r[4], json.loads(r[5])) for r in rows
            if valid(date.fromisoformat(r[0]), r[1], date.fromisoformat(r[2]), tz, today)}


async def save(db: Database, day: date, tz: ZoneInfo, today: date, built: store.Built, seen_epoch: int) -> bool:
    """Store a day computed from reads made at ``seen_epoch``; not if a write came since."""
    start, end = call_stats.day_bounds(day, tz)
    names = [sorted(built.who_names), sorted(built.topic_names), sorted(built.employees)]
    async with db.transaction(opportunistic=True) as tx:
        row = await (await tx.execute("SELECT epoch FROM appeal_meta WHERE id = 1")).fetchone()
        if row is None or row[0] != seen_epoch:
            return False
        await tx.execute("DELETE FROM appeal_facets WHERE day = ?", (day.isoformat(),))
        await tx.execute("DELETE FROM appeal_days WHERE day = ?", (day.isoformat(),))
        await tx.execute(
            "INSERT INTO appeal_days (day, tz, start_ts, end_ts, computed_for, version, size, contacts, names, appeals)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (day.isoformat(), tz.key, start, end, today.isoformat(), seen_epoch, len(built.appeals),
             sum(len(a.contacts) for a in built.appeals),
             json.dumps(names, ensure_ascii=False), encode_appeals(built.appeals)))
        facets = [ap.facet_of(a) for a in built.appeals]
        await tx.executemany(
            "INSERT INTO appeal_facets (day, idx, success, employee, topic, channel, who, employees, contacts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(day.isoformat(), i, f.success, f.employee, f.topic, f.channel, f.who, f.employees, f.contacts)
             for i, f in enumerate(facets)])
    return True


async def contacts_in(db: Database, first: date, last: date) -> int:
    """About how many contacts the period holds, from the stored days (a day not stored yet
    counts none): the pages' bound on what they hold in memory, read in a millisecond."""
    row = await db.fetchone("SELECT COALESCE(SUM(contacts), 0) FROM appeal_days WHERE day >= ? AND day <= ?",
                            (first.isoformat(), last.isoformat()))
    return int(row[0]) if row else 0


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
    utm = _CONTACT.index("utm")
    for contacts, records, main, success, lone_main in json.loads(text):
        cs = [ap.Contact(**dict(zip(_CONTACT, values, strict=True)) | {"utm": tuple(tuple(p) for p in values[utm])})
              for values in contacts]
        rs = [ap.Record(*values) for values in records]
        chosen = rs[main] if main is not None else ap.Record(*lone_main) if lone_main is not None else None
        out.append(ap.Appeal(day, cs, rs, chosen, success))
    return out


async def _compute(db: Database, day: date, today: date, tz: ZoneInfo) -> store.Built:
    """One day's обращения, live, stored when no write came meanwhile."""
    seen = await epoch(db)
    start, end = call_stats.day_bounds(day, tz)
    built = await store.build(db, start, end, today, tz)
    try:
        await save(db, day, tz, today, built, seen)
    except sqlite3.OperationalError as exc:  # another process holds the database: served, not stored
        log.warning("«История обращений» of %s not stored: %s", day, exc)
    return built


async def warm(db: Database, first: date, last: date, today: date, tz: ZoneInfo) -> int:
    """Compute and store the days of ``first``..``last`` not stored (or no longer valid), newest
    first, one at a time (the background pass; a page then reads what is stored). Returns how many."""
    have = await stored_days(db, first, last, tz, today)
    done = 0
    for day in [last - timedelta(days=i) for i in range((last - first).days + 1)]:
        if day not in have:
            await _compute(db, day, today, tz)
            done += 1
    return done


@dataclass
class Period:
    """A period's обращения: their facets in order, each with its day and place, and the
    обращения themselves read and decoded on demand."""

    facets: list[ap.Facet] = field(default_factory=list)  # in order: each day's in its JSON's order
    starts: dict[date, int] = field(default_factory=dict)  # where each day's facets start in ``facets``
    who_names: set[str] = field(default_factory=set)
    topic_names: set[str] = field(default_factory=set)
    employees: set[str] = field(default_factory=set)
    versions: dict[date, int] = field(default_factory=dict)  # stored days: the version the facets are of
    decoded: dict[date, list[ap.Appeal]] = field(default_factory=dict)
    tz: ZoneInfo | None = None
    today: date | None = None

    @classmethod
    def of(cls, built: store.Built) -> Period:
        """A period built live (narrowed, or one patient's): nothing to read again."""
        out = cls(who_names=built.who_names, topic_names=built.topic_names, employees=built.employees)
        for a in built.appeals:
            out.starts.setdefault(a.day, len(out.facets))
            out.decoded.setdefault(a.day, []).append(a)
            out.facets.append(ap.facet_of(a))
        return out

    def refs(self, positions: Iterable[int]) -> list[tuple[date, int]]:
        """(day, place in the day) of the facets at these positions."""
        return [(f.day, p - self.starts[f.day]) for p in positions for f in (self.facets[p],)]

    async def by_day(self, db: Database, refs: list[tuple[date, int]]) -> AsyncIterator[list[ap.Appeal]]:
        """The обращения of ``refs`` a day at a time (a year's CSV then holds one day in memory)."""
        for day, group in itertools.groupby(refs, key=lambda ref: ref[0]):
            yield await self.appeals(db, list(group))
            self.decoded.pop(day, None)

    async def appeals(self, db: Database, refs: list[tuple[date, int]]) -> list[ap.Appeal]:
        out = []
        for day, index in refs:
            if day not in self.decoded:
                row = await db.fetchone("SELECT version, appeals FROM appeal_days WHERE day = ?", (day.isoformat(),))
                if row is not None and row[0] == self.versions.get(day):
                    self.decoded[day] = decode_appeals(row[1], day)
                else:  # changed since its facets were read: computed again
                    assert self.tz is not None and self.today is not None
                    self.decoded[day] = (await _compute(db, day, self.today, self.tz)).appeals
            day_appeals = self.decoded[day]
            if index < len(day_appeals):
                out.append(day_appeals[index])
        return out


async def period(db: Database, first: date, last: date, today: date, tz: ZoneInfo) -> Period:
    """Every обращение of the clinic days ``first``..``last``: the stored days' facets as they
    are, the other days (and a day that changed between two reads) computed live
    (``crm.appeals.build`` for that day alone) and stored."""
    have = await stored_days(db, first, last, tz, today)
    read: dict[date, list[ap.Facet]] = {}
    chunk = first
    while chunk <= last:  # a month of rows at a time: a year's rows never sit in memory at once
        end = min(last, chunk + timedelta(days=30))
        rows = await db.fetch_tuples(
            "SELECT f.day, f.success, f.employee, f.topic, f.channel, f.who, f.employees, f.contacts, d.version"
            " FROM appeal_facets f JOIN appeal_days d ON d.day = f.day WHERE f.day >= ? AND f.day <= ?"
            " ORDER BY f.day, f.idx", (chunk.isoformat(), end.isoformat()))
        collecting = gc.isenabled()
        gc.disable()  # tens of thousands of tuples that all live on: the collector would scan them again and again
        try:
            for day_text, group in itertools.groupby(rows, key=lambda r: r[0]):
                day = date.fromisoformat(day_text)
                known = have.get(day)
                if known is not None:
                    read[day] = [ap.Facet(day, *r[1:8]) for r in group if r[8] == known.version]
        finally:
            if collecting:
                gc.enable()
        chunk = end + timedelta(days=1)
    out = Period(tz=tz, today=today)
    for day in [first + timedelta(days=i) for i in range((last - first).days + 1)]:
        known = have.get(day)
        if known is not None and len(read.get(day, ())) == known.size:
            out.versions[day] = known.version
            facets = read.get(day, [])
            whos, topics, employees = known.names
        else:
            built = await _compute(db, day, today, tz)
            out.decoded[day] = built.appeals
            facets = [ap.facet_of(a) for a in built.appeals]
            whos, topics, employees = built.who_names, built.topic_names, built.employees  # type: ignore[assignment]
        out.starts[day] = len(out.facets)
        out.facets += facets
        out.who_names.update(whos)
        out.topic_names.update(topics)
        out.employees.update(employees)
    return out

"""«История обращений» kept by clinic day (migration 0023): a day's обращения as the live
computation builds them, stored as JSON, one row of facets each (``appeal_facets``) and the day's
groups of alike обращения (``appeal_groups``), so that a period's page counts in SQL and decodes
only the days it shows instead of grouping every contact again.

Exact by forgetting: the triggers of migration 0023 delete, in the writing transaction, every
stored day a write may change, and move an epoch on; a day is stored only if no write came
between the reads it was computed from and the store (``save`` compares the epoch under the
write lock). A day computed while its requests could still fall overdue (seven days) is valid on
the date it was computed only. A day whose stored обращения changed between reading its facets
and reading them is computed again for the page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm import appeals as store
from crm.beside import Computer
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
    """Store a day computed from reads made at ``seen_epoch``; not if a write came since. Encoded
    before the write lock (a busy day's JSON: tens of ms): the writer holds it only to swap rows."""
    if await epoch(db) != seen_epoch:  # a write came meanwhile: nothing to encode
        return False
    return await _swap(db, day, seen_epoch, await asyncio.to_thread(_day_rows, day, tz, today, built, seen_epoch))


DayRows = tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]


async def computed_rows(db: Database, day: date, today: date, tz: ZoneInfo) -> tuple[int, DayRows]:
    """A day computed and encoded as ``save`` stores it, with the epoch its reads began at (what
    the background pass's process, crm.beside, hands back to the writer)."""
    seen = await epoch(db)
    start, end = call_stats.day_bounds(day, tz)
    return seen, _day_rows(day, tz, today, await store.build(db, start, end, today, tz), seen)


async def _swap(db: Database, day: date, seen_epoch: int, rows: DayRows) -> bool:
    if await epoch(db) != seen_epoch:  # a write came meanwhile (a busy today): no write lock taken
        return False
    stored, facet_rows, group_rows = rows
    async with db.transaction(opportunistic=True) as tx:
        # locked till the commit: two boxes of a chain storing the same day take turns (each
        # then deletes what the other stored), never a duplicate key
        row = await (await tx.execute(f"SELECT epoch FROM appeal_meta WHERE id = 1{tx.for_update}")).fetchone()
        if row is None or row[0] != seen_epoch:
            return False
        await tx.execute("DELETE FROM appeal_facets WHERE day = ?", (day.isoformat(),))
        await tx.execute("DELETE FROM appeal_groups WHERE day = ?", (day.isoformat(),))
        await tx.execute("DELETE FROM appeal_days WHERE day = ?", (day.isoformat(),))
        await tx.execute(
            "INSERT INTO appeal_days (day, tz, start_ts, end_ts, computed_for, version, size, contacts, names, appeals)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", stored)
        await tx.executemany(
            "INSERT INTO appeal_facets (day, idx, success, employee, topic, channel, who, employees, contacts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", facet_rows)
        await tx.executemany(
            "INSERT INTO appeal_groups (day, success, employee, topic, channel, who, n, contacts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", group_rows)
    return True


def _day_rows(day: date, tz: ZoneInfo, today: date, built: store.Built, seen_epoch: int) -> DayRows:
    """A computed day as the rows ``save`` writes: the day, its facets, its groups."""
    start, end = call_stats.day_bounds(day, tz)
    names = [sorted(built.who_names), sorted(built.topic_names), sorted(built.employees)]
    facets = [ap.facet_of(a) for a in built.appeals]
    stored = (day.isoformat(), tz.key, start, end, today.isoformat(), seen_epoch, len(built.appeals),
              sum(len(a.contacts) for a in built.appeals), json.dumps(names, ensure_ascii=False),
              encode_appeals(built.appeals))
    facet_rows = [(day.isoformat(), i, f.success, f.employee, f.topic, f.channel, f.who, f.employees, f.contacts)
                  for i, f in enumerate(facets)]
    return stored, facet_rows, [(day.isoformat(), *g[1:]) for g in ap.group_facets(facets)]


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


def decode_appeal(item: list[Any], day: date) -> ap.Appeal:
    """One обращение of a stored day's JSON (``encode_appeals``) as objects again."""
    contacts, records, main, success, lone_main = item
    utm = _CONTACT.index("utm")
    cs = [ap.Contact(**dict(zip(_CONTACT, values, strict=True)) | {"utm": tuple(tuple(p) for p in values[utm])})
          for values in contacts]
    rs = [ap.Record(*values) for values in records]
    chosen = rs[main] if main is not None else ap.Record(*lone_main) if lone_main is not None else None
    return ap.Appeal(day, cs, rs, chosen, success)


class StoredDay:
    """A stored day's обращения: its JSON parsed at once, each обращение built into objects
    only when asked for (a page shows a few dozen of a busy day's thousands)."""

    __slots__ = ("_items", "_day", "_built")

    def __init__(self, text: str, day: date) -> None:
        self._items: list[list[Any]] = json.loads(text)
        self._day = day
        self._built: dict[int, ap.Appeal] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> ap.Appeal:
        if index not in self._built:
            self._built[index] = decode_appeal(self._items[index], self._day)
        return self._built[index]


async def _compute(db: Database, day: date, today: date, tz: ZoneInfo) -> tuple[store.Built, bool]:
    """One day's обращения, live, stored when no write came meanwhile (and whether it was)."""
    seen = await epoch(db)
    start, end = call_stats.day_bounds(day, tz)
    built = await store.build(db, start, end, today, tz)
    try:
        return built, await save(db, day, tz, today, built, seen)
    except db.BUSY as exc:  # another process holds the database (or the day): served, not stored
        log.warning("«История обращений» of %s not stored: %s", day, exc)
        return built, False


async def warm(db: Database, first: date, last: date, today: date, tz: ZoneInfo,
               computer: Computer | None = None) -> int:
    """Compute and store the days of ``first``..``last`` not stored (or no longer valid), newest
    first, one at a time, in ``computer`` (crm.beside) when given. Returns how many."""
    have = await stored_days(db, first, last, tz, today)
    todo = [d for d in (last - timedelta(days=i) for i in range((last - first).days + 1)) if d not in have]
    for day in todo:
        if computer is None:
            await _compute(db, day, today, tz)
            continue
        try:
            await _swap(db, day, *await computer.run(functools.partial(computed_rows, day=day, today=today, tz=tz)))
        except db.BUSY as exc:  # another process holds the database: the next pass
            log.warning("«История обращений» of %s not stored: %s", day, exc)
    return len(todo)


@dataclass(frozen=True)
class Pick:
    """The filters applied after grouping: the success, an employee of any contact."""

    successes: tuple[str, ...] = ()
    employee: str = ""

    def matches(self, f: ap.Facet) -> bool:
        return (not self.successes or f.success in self.successes) and (
            not self.employee or f.has_employee(self.employee))

    def sql(self) -> tuple[str, list[Any]]:
        where, params = "", []
        if self.successes:
            where += f" AND success IN ({','.join('?' * len(self.successes))})"
            params += list(self.successes)
        if self.employee:  # one whole line of the employees
            where += " AND (? || employees || ?) LIKE ? ESCAPE '!'"
            line = self.employee.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            params += ["\n", "\n", f"%\n{line}\n%"]
        return where, params


@dataclass
class Period:
    """A period's обращения. Stored: its stored days counted, paged and read with SQL over
    ``appeal_facets``, the обращения decoded for the days shown; a day that could not be stored
    (a write came while it was computed: a busy today) is one of the ``live`` days, its facets in
    memory beside them (a year's page on a busy day would otherwise hold the year's facets). In
    memory (built live, narrowed or one patient's): every facet in order, each day's from ``starts``."""

    first: date
    last: date
    stored: bool = False
    facets: list[ap.Facet] = field(default_factory=list)
    starts: dict[date, int] = field(default_factory=dict)
    sizes: dict[date, int] = field(default_factory=dict)
    who_names: set[str] = field(default_factory=set)
    topic_names: set[str] = field(default_factory=set)
    employees: set[str] = field(default_factory=set)
    versions: dict[date, int] = field(default_factory=dict)  # stored days: the version counted
    live: set[date] = field(default_factory=set)  # of a stored period, the days in memory
    decoded: dict[date, list[ap.Appeal] | StoredDay] = field(default_factory=dict)
    tz: ZoneInfo | None = None
    today: date | None = None

    @classmethod
    def of(cls, built: store.Built, first: date, last: date) -> Period:
        """A period built live (narrowed, or one patient's): nothing to read again."""
        out = cls(first, last, who_names=built.who_names, topic_names=built.topic_names, employees=built.employees)
        for a in built.appeals:
            out.starts.setdefault(a.day, len(out.facets))
            out.sizes[a.day] = out.sizes.get(a.day, 0) + 1
            out.decoded.setdefault(a.day, []).append(a)
            out.facets.append(ap.facet_of(a))
        return out

    def _span(self, pick: Pick) -> tuple[str, list[Any]]:
        where, params = pick.sql()
        if self.live:  # their rows, if any, are an older computation's
            where += f" AND day NOT IN ({','.join('?' * len(self.live))})"
            params += [d.isoformat() for d in sorted(self.live)]
        return f"day >= ? AND day <= ?{where}", [self.first.isoformat(), self.last.isoformat(), *params]

    def _in_memory(self, pick: Pick) -> list[int]:
        return [p for p, f in enumerate(self.facets) if pick.matches(f)]

    async def groups(self, db: Database, pick: Pick, *, by_day: bool = True) -> list[ap.Group]:
        """The picked обращения as groups of alike ones (counts, totals, costs, the chart).
        ``by_day`` False: the days summed in SQL (a year's page needs no day: thousands of rows
        instead of tens of thousands), each group dated the period's first day."""
        groups = ap.group_facets(f for f in self.facets if pick.matches(f))
        if not self.stored:
            return groups if by_day else _days_summed(groups, self.first)
        where, params = self._span(pick)
        day = "day" if by_day else f"'{self.first.isoformat()}'"
        if pick.employee:  # any contact's employee: counted from the facets
            sql = (f"SELECT {day}, success, employee, topic, channel, who, COUNT(*), SUM(contacts) FROM appeal_facets"
                   f" WHERE {where} GROUP BY {'day, ' if by_day else ''}success, employee, topic, channel, who")
        elif by_day:
            sql = f"SELECT day, success, employee, topic, channel, who, n, contacts FROM appeal_groups WHERE {where}"
        else:
            sql = (f"SELECT {day}, success, employee, topic, channel, who, SUM(n), SUM(contacts) FROM appeal_groups"
                   f" WHERE {where} GROUP BY success, employee, topic, channel, who")
        days: dict[str, date] = {}
        out = [ap.Group(days.setdefault(r[0], date.fromisoformat(r[0])), *r[1:]) for r in await db.fetch_tuples(
            sql, params)]
        return out + groups if by_day or not groups else _days_summed(out + groups, self.first)

    async def refs(self, db: Database, pick: Pick, offset: int = 0, limit: int | None = None) -> list[tuple[date, int]]:
        """(day, place in the day) of the picked обращения, in order, from ``offset``."""
        chosen = [(self.facets[p].day, p - self.starts[self.facets[p].day]) for p in self._in_memory(pick)]
        if self.stored:  # the stored days' in SQL; the live days' (if any) merged in by day
            where, params = self._span(pick)
            skip = 0 if self.live or limit is None else offset
            page = [] if limit is None else [limit + offset - skip, skip]
            rows = await db.fetch_tuples(f"SELECT day, idx FROM appeal_facets WHERE {where} ORDER BY day, idx"
                                         + (" LIMIT ? OFFSET ?" if page else ""), [*params, *page])
            chosen = sorted(chosen + [(date.fromisoformat(d), i) for d, i in rows])
            offset -= skip
        return chosen[offset:] if limit is None else chosen[offset:offset + limit]

    async def by_day(self, db: Database, pick: Pick) -> AsyncIterator[list[ap.Appeal]]:
        """The picked обращения a day at a time (a year's CSV holds one day in memory)."""
        day = self.first
        while day <= self.last:
            if self.stored and day not in self.live:
                where, params = pick.sql()
                refs = [(day, r[0]) for r in await db.fetch_tuples(
                    f"SELECT idx FROM appeal_facets WHERE day = ?{where} ORDER BY idx", [day.isoformat(), *params])]
            else:
                start = self.starts.get(day, 0)
                refs = [(day, p - start) for p in range(start, start + self.sizes.get(day, 0))
                        if pick.matches(self.facets[p])]
            if refs:
                yield await self.appeals(db, refs)
            self.decoded.pop(day, None)
            day += timedelta(days=1)

    async def appeals(self, db: Database, refs: list[tuple[date, int]]) -> list[ap.Appeal]:
        out = []
        for day, index in refs:
            if day not in self.decoded:
                row = await db.fetchone("SELECT version, appeals FROM appeal_days WHERE day = ?", (day.isoformat(),))
                if row is not None and row[0] == self.versions.get(day):
                    self.decoded[day] = StoredDay(row[1], day)
                else:  # changed since it was counted: computed again
                    assert self.tz is not None and self.today is not None
                    self.decoded[day] = (await _compute(db, day, self.today, self.tz))[0].appeals
            day_appeals = self.decoded[day]
            if index < len(day_appeals):
                out.append(day_appeals[index])
        return out


def _days_summed(groups: list[ap.Group], first: date) -> list[ap.Group]:
    summed: dict[tuple[str, ...], list[int]] = {}
    for g in groups:
        n = summed.setdefault((g.success, g.employee, g.topic, g.channel, g.who), [0, 0])
        n[0], n[1] = n[0] + g.n, n[1] + g.contacts
    return [ap.Group(first, *k, n, contacts) for k, (n, contacts) in summed.items()]


async def period(db: Database, first: date, last: date, today: date, tz: ZoneInfo) -> Period:
    """Every обращение of the clinic days ``first``..``last``: the days not stored (or no longer
    valid) computed live (``crm.appeals.build`` for that day alone) and stored, then the period
    counted in SQL; a day that could not be stored beside it, in memory."""
    have = await stored_days(db, first, last, tz, today)
    out = Period(first, last, tz=tz, today=today)
    fresh: dict[date, store.Built] = {}
    for day in [first + timedelta(days=i) for i in range((last - first).days + 1)]:
        if day not in have:
            fresh[day] = (await _compute(db, day, today, tz))[0]
    if fresh:
        have |= await stored_days(db, min(fresh), max(fresh), tz, today)
    for day, known in have.items():
        out.versions[day] = known.version
        for names, into in zip(known.names, (out.who_names, out.topic_names, out.employees), strict=True):
            into.update(names)
    for built in fresh.values():
        out.who_names |= built.who_names
        out.topic_names |= built.topic_names
        out.employees |= built.employees
    out.stored = True
    for day in sorted(d for d in fresh if d not in have):  # not stored: in memory, the rest in SQL
        out.live.add(day)
        out.decoded[day] = fresh[day].appeals
        out.starts[day], out.sizes[day] = len(out.facets), len(fresh[day].appeals)
        out.facets += [ap.facet_of(a) for a in fresh[day].appeals]
    return out

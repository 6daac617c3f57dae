"""The clinic's call reports (seed 000): administrators' efficiency, the processing of missed
calls, calls per day, and call tags.

They read the same records as the history and take the same filter (period, DID, employee,
tag), so a report's figure and the history's rows for that filter always agree. Employees'
and contractors' calls and internal calls are left out (seed 001: ``counts_for_stats``).
Days are the clinic's days (its time zone), not UTC ones. The figures come from the daily
aggregates of ``crm.call_stats`` (a year's report reads a few thousand rows, not a million
calls); tests/unit/test_report_aggregates.py holds them equal to the row-by-row computation.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm import call_stats
from crm.call_listing import CallFilter
from crm.db import Database
from crm.rules import call_stats as call_stats_rules
from crm.rules.call_stats import COUNTED_TYPES, Totals

MAX_DAYS = 366


def percent(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


# --- «Эффективность администраторов» ------------------------------------------------------
@dataclass(frozen=True)
class AdminRow:
    user_id: int
    name: str
    answered: int  # incoming calls the administrator answered
    missed: int  # incoming calls their phone rang for and nobody answered (seed 000's rule)
    outgoing: int  # outgoing calls the patient answered
    outgoing_unanswered: int
    booked: int  # calls that ended in an appointment (conversion)
    talk_seconds: float
    talked: int  # calls with a conversation (for the average)

    @property
    def total(self) -> int:
        return self.answered + self.missed + self.outgoing + self.outgoing_unanswered

    @property
    def conversion(self) -> float | None:
        """Seed 000: successful calls over all calls, missed ones included, x 100."""
        return percent(self.booked, self.total)

    @property
    def average_talk(self) -> float:
        return self.talk_seconds / self.talked if self.talked else 0.0

    @property
    def missed_share(self) -> float | None:
        return percent(self.missed, self.answered + self.missed)

    @property
    def unanswered_share(self) -> float | None:
        return percent(self.outgoing_unanswered, self.outgoing + self.outgoing_unanswered)


async def admin_efficiency(db: Database, f: CallFilter, tz: ZoneInfo) -> list[AdminRow]:
    """One row per employee: what they answered or placed (``answered_by_user`` is the
    phone's holder at that moment, also for outgoing calls) and the calls they missed. A
    ring-all call someone answered, or a linear queue's call a later phone answered, is
    nobody's miss; a call nobody answered is missed by every phone that rang (the rules:
    crm.rules.call_stats; the figures: the daily aggregates of crm.call_stats)."""
    own = ("own_answered", "own_missed", "own_outgoing", "own_outgoing_unanswered", "own_booked",
           "own_talk_seconds", "own_talked")
    by_user: dict[int, Totals] = {}
    for _, uid, t in await call_stats.read(db, stats_filter(f, tz), tz, own, per_user=True):
        by_user.setdefault(uid, Totals()).add(t)
    by_user = {uid: t for uid, t in by_user.items() if any(getattr(t, n) for n in own if n != "own_talk_seconds")}
    if not by_user:
        return []
    marks = ", ".join("?" for _ in by_user)
    names = {r[0]: r[1] or r[2] for r in await db.fetchall(
        f"SELECT id, full_name, login FROM users WHERE id IN ({marks})", list(by_user))}
    rows = [
        AdminRow(user_id=uid, name=names.get(uid, f"#{uid}"), answered=t.own_answered, missed=t.own_missed,
                 outgoing=t.own_outgoing, outgoing_unanswered=t.own_outgoing_unanswered, booked=t.own_booked,
                 talk_seconds=float(t.own_talk_seconds), talked=t.own_talked)
        for uid, t in by_user.items()
    ]
    return sorted(rows, key=lambda r: (-r.total, r.name))


# --- «Количество звонков по дням» ---------------------------------------------------------
@dataclass
class DayRow:
    day: date
    incoming: int = 0  # answered
    missed: int = 0
    outgoing: int = 0
    outgoing_unanswered: int = 0
    booked: int = 0

    @property
    def total(self) -> int:
        return self.incoming + self.missed + self.outgoing + self.outgoing_unanswered


def _local_days(f: CallFilter, tz: ZoneInfo) -> list[date]:
    if not (f.since and f.until):
        return []
    first = datetime.fromisoformat(f.since).astimezone(tz).date()
    last = (datetime.fromisoformat(f.until).astimezone(tz) - timedelta(microseconds=1)).date()
    n = (last - first).days + 1
    return [first + timedelta(days=i) for i in range(min(max(n, 0), MAX_DAYS))]


def stats_filter(f: CallFilter, tz: ZoneInfo) -> call_stats.StatsFilter:
    """A report's call filter as whole clinic days (the reports' periods are days)."""
    days = _local_days(f, tz)
    if not days:
        raise ValueError("a report needs a period")
    return call_stats.StatsFilter(first=days[0], last=days[-1], did=f.did or "", user_id=f.user_id,
                                  tag=f.tag or "")


async def calls_per_day(db: Database, f: CallFilter, tz: ZoneInfo) -> list[DayRow]:
    """Each day of the period (empty days too): incoming answered, missed, outgoing with and
    without an answer, and how many ended in an appointment."""
    days = {d: DayRow(d) for d in _local_days(f, tz)}
    for day, _, t in await call_stats.read(db, stats_filter(f, tz), tz, COUNTED_TYPES + ("booked",)):
        row = days[date.fromisoformat(day)]
        for name in (*COUNTED_TYPES, "booked"):
            setattr(row, name, getattr(row, name) + getattr(t, name))
    return [days[d] for d in sorted(days)]


# --- «Обработка пропущенных звонков» ------------------------------------------------------
@dataclass
class MissedSummary:
    missed: int = 0
    called_back: int = 0  # the clinic reached the patient within 24 h
    got_through: int = 0  # the patient called again within 24 h and was answered
    pending: int = 0  # less than 24 h ago and not processed yet
    unprocessed: int = 0  # 24 h passed (or a hidden number)
    minutes_to_process: list[float] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.called_back + self.got_through

    @property
    def processed_share(self) -> float | None:
        return percent(self.processed, self.missed)

    @property
    def median_minutes(self) -> float | None:
        return statistics.median(self.minutes_to_process) if self.minutes_to_process else None


async def missed_processing(db: Database, f: CallFilter, tz: ZoneInfo,
                            now: float) -> tuple[MissedSummary, list[tuple[date, MissedSummary]]]:
    """How many patients whose calls were missed were reached within 24 hours, by whom, and
    how fast (the same rule as the history's «обработанные / необработанные»)."""
    per_day: dict[date, Totals] = {}
    # the start times of the unreturned calls matter only on the days some may still be pending
    for day, _, t in await call_stats.read(db, stats_filter(f, tz), tz,
                                           ("missed", "called_back", "got_through", "minutes_to_process",
                                            "unreturned"),
                                           recent=("unreturned", call_stats_rules.first_unsettled_day(now, tz))):
        if t.missed:
            per_day.setdefault(date.fromisoformat(day), Totals()).add(t)
    days = [(d, _missed_summary(t, now)) for d, t in sorted(per_day.items())]
    # the period's figures are the days' sums (a year's start times are never gathered in one list)
    return MissedSummary(
        missed=sum(s.missed for _, s in days), called_back=sum(s.called_back for _, s in days),
        got_through=sum(s.got_through for _, s in days), pending=sum(s.pending for _, s in days),
        unprocessed=sum(s.unprocessed for _, s in days),
        minutes_to_process=[m for _, s in days for m in s.minutes_to_process]), days


def _missed_summary(t: Totals, now: float) -> MissedSummary:
    pending, unprocessed = call_stats_rules.processing_state(t, now)
    return MissedSummary(missed=t.missed, called_back=t.called_back, got_through=t.got_through, pending=pending,
                         unprocessed=unprocessed, minutes_to_process=t.minutes_to_process)


# --- «Метки звонков» ----------------------------------------------------------------------
async def tag_counts(db: Database, f: CallFilter, tz: ZoneInfo, group_id: int | None = None) -> dict[str, Any]:
    """Calls per tag (a call with several tags counts for each), grouped by tag group; a
    deleted group's tags stay (seed 000). «Другая метка» texts are counted apart. Also the
    calls whose pop-up was closed without a tag (the history's dash)."""
    t = Totals()
    for _, _, day in await call_stats.read(db, stats_filter(f, tz), tz,
                                           ("tagged", "dismissed", "tag_calls", "group_tagged")):
        t.add(day)
    counts = [(*call_stats_rules.untag_key(k), n) for k, n in t.tag_calls.items()]
    if group_id is not None:
        counts = [c for c in counts if c[0] == group_id]
    group_rows = await db.fetchall("SELECT id, name, deleted_at FROM tag_groups")
    group_names = {r["id"]: (r["name"], r["deleted_at"]) for r in group_rows}
    named = []
    for gid, tag_id, label, n in counts:
        if tag_id is None:
            name = "Другая метка"
        else:
            gname, deleted = group_names.get(gid, (None, None))
            name = (gname or "Без группы") + (" (группа удалена)" if deleted else "")
        named.append((name, label, n))
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, label, n in sorted(named, key=lambda x: (x[0], -x[2], x[1])):
        groups.setdefault(name, []).append({"label": label, "calls": n})
    tagged_calls = t.tagged if group_id is None else t.group_tagged.get(str(group_id), 0)
    for items in groups.values():
        for item in items:
            item["share"] = percent(item["calls"], tagged_calls)
    return {"groups": groups, "tagged_calls": tagged_calls,
            "closed_without_tag": 0 if group_id is not None else t.dismissed}

"""The reports' daily aggregates (seed 000), pure: one clinic day's calls in, its totals out.

A call contributes to the totals of every key it matches: its DID; the tag '' (any call) and
each label it carries; the user 0 (anyone) and each employee who took part (answered it,
placed it, or was rung). A report over a filter then sums the rows of one (tag, user) pair
over the period's days (and the DID if chosen), instead of reading every call of the period.
The per-employee figures of «Эффективность администраторов» are the ``own_*`` counters of that
employee's rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from crm.rules import windows

COUNTED_TYPES = ("incoming", "missed", "outgoing", "outgoing_unanswered")
ANYONE = 0  # the user key of the rows every call counts in
ANY_TAG = ""  # the tag key of the rows every call counts in


@dataclass(frozen=True)
class CallFacts:
    """What the reports need of one call that counts for statistics (seed 001)."""

    started_ts: float
    did: str
    call_type: str
    direction: str
    answered_by: int | None
    originated_by: int | None
    talk_seconds: float
    talked: bool  # answered_at is set
    booked: bool  # seed 000's conversion (windows.appointment_converts)
    leg_users: frozenset[int] = frozenset()
    missed_users: frozenset[int] = frozenset()  # legs that missed it (seed 000's rule)
    back_ts: float | None = None  # a missed call's first conversation within the day after it
    back_direction: str | None = None
    tags: tuple[tuple[int | None, int | None, str], ...] = ()  # (group, tag, label)
    dismissed: int = 0  # its tag pop-up closed without a tag

    def participants(self) -> set[int]:
        """The employees the history's employee filter finds the call by."""
        found = set(self.leg_users)
        found.update(u for u in (self.answered_by, self.originated_by) if u is not None)
        return found


def tag_key(group_id: int | None, tag_id: int | None, label: str) -> str:
    return json.dumps([group_id, tag_id, label], ensure_ascii=False)


def untag_key(key: str) -> tuple[int | None, int | None, str]:
    group_id, tag_id, label = json.loads(key)
    return group_id, tag_id, label


@dataclass
class Totals:
    """One key's figures for one day (or, merged, for a period)."""

    incoming: int = 0
    missed: int = 0
    outgoing: int = 0
    outgoing_unanswered: int = 0
    booked: int = 0  # of the four counted types
    own_answered: int = 0  # the key's employee answered it (incoming)
    own_outgoing: int = 0
    own_outgoing_unanswered: int = 0
    own_booked: int = 0
    own_talk_seconds: float = 0.0
    own_talked: int = 0
    own_missed: int = 0  # the key's employee's phone rang and missed it, nobody answered
    called_back: int = 0  # missed calls the clinic returned within a day
    got_through: int = 0  # missed calls whose caller got through within a day
    minutes_to_process: list[float] = field(default_factory=list)
    unreturned: list[float] = field(default_factory=list)  # start times: pending or unprocessed
    tagged: int = 0  # calls with at least one tag
    dismissed: int = 0
    tag_calls: dict[str, int] = field(default_factory=dict)  # tag_key -> calls
    group_tagged: dict[str, int] = field(default_factory=dict)  # group id -> calls with a tag of it

    def add(self, other: Totals) -> None:
        for name in NUMBERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.minutes_to_process.extend(other.minutes_to_process)
        self.unreturned.extend(other.unreturned)
        for mine, theirs in ((self.tag_calls, other.tag_calls), (self.group_tagged, other.group_tagged)):
            for k, n in theirs.items():
                mine[k] = mine.get(k, 0) + n


NUMBERS = ("incoming", "missed", "outgoing", "outgoing_unanswered", "booked", "own_answered", "own_outgoing",
           "own_outgoing_unanswered", "own_booked", "own_talk_seconds", "own_talked", "own_missed",
           "called_back", "got_through", "tagged", "dismissed")
LISTS = ("minutes_to_process", "unreturned", "tag_calls", "group_tagged")

Key = tuple[str, str, int]  # (did, tag label or ANY_TAG, user id or ANYONE)


def _count(t: Totals, call: CallFacts, user: int) -> None:
    if call.call_type in COUNTED_TYPES:
        setattr(t, call.call_type, getattr(t, call.call_type) + 1)
        t.booked += call.booked
    if call.call_type == "missed":
        if call.back_ts is not None:
            if call.back_direction == "outgoing":
                t.called_back += 1
            else:
                t.got_through += 1
            t.minutes_to_process.append((call.back_ts - call.started_ts) / 60)
        else:
            t.unreturned.append(call.started_ts)
        if user in call.missed_users:
            t.own_missed += 1
    if user != ANYONE and call.answered_by == user and call.call_type in ("incoming", "outgoing",
                                                                          "outgoing_unanswered"):
        t.own_answered += call.direction == "incoming"
        t.own_outgoing += call.call_type == "outgoing"
        t.own_outgoing_unanswered += call.call_type == "outgoing_unanswered"
        t.own_booked += call.booked
        t.own_talk_seconds += call.talk_seconds
        t.own_talked += call.talked
    if call.tags:
        t.tagged += 1
        for k in {tag_key(*tag) for tag in call.tags}:
            t.tag_calls[k] = t.tag_calls.get(k, 0) + 1
        for g in {str(group) for group, _, _ in call.tags}:
            t.group_tagged[g] = t.group_tagged.get(g, 0) + 1
    t.dismissed += call.dismissed


def day_totals(calls: list[CallFacts]) -> dict[Key, Totals]:
    """Every key's totals over the given calls (one clinic day's)."""
    out: dict[Key, Totals] = {}
    for call in calls:
        labels = {ANY_TAG, *(label for _, _, label in call.tags)}
        users = {ANYONE, *call.participants()}
        for label in labels:
            for user in users:
                _count(out.setdefault((call.did, label, user), Totals()), call, user)
    return out


def processing_state(t: Totals, now: float) -> tuple[int, int]:
    """(pending, unprocessed) of the missed calls nobody returned, as of ``now``: pending while
    their day to be processed lasts (windows.processing_deadline). Every missed call is called
    back, got through or unreturned, so the unprocessed are the rest of the missed: a day all of
    whose calls are past their deadline (``first_unsettled_day``) needs no ``unreturned`` read."""
    pending = 0
    if t.unreturned and now < windows.processing_deadline(max(t.unreturned)):
        pending = sum(1 for started in t.unreturned if now < windows.processing_deadline(started))
    return pending, t.missed - t.called_back - t.got_through - pending


def first_unsettled_day(now: float, tz: ZoneInfo) -> date:
    """The first clinic day that may still have a missed call within its deadline at ``now``
    (every earlier day ended more than the processing window ago)."""
    return datetime.fromtimestamp(now - windows.MISSED_CALL_PROCESSING, tz).date()


def days_touched(from_ts: float, to_ts: float, tz: ZoneInfo) -> list[date]:
    """The clinic days an instant or a span of time falls on."""
    first = datetime.fromtimestamp(min(from_ts, to_ts), tz).date()
    last = datetime.fromtimestamp(max(from_ts, to_ts), tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def day_bounds(day: date, tz: ZoneInfo) -> tuple[float, float]:
    """The epoch seconds of a clinic day's first instant and of the next day's (DST-exact)."""
    start = datetime.combine(day, datetime.min.time(), tz).timestamp()
    return start, datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).timestamp()

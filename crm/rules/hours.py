"""A clinic number's working hours (issue #29): "пн-пт 09:00-20:00; сб 10:00-15:00" plus a list
of holidays, checked when typed, asked "open now?" by the panel, and rendered for Asterisk as
``GotoIfTime`` steps (crm stores the text; the same parse feeds both). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

WEEKDAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
ASTERISK_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ASTERISK_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_SPAN = re.compile(r"^\s*(пн|вт|ср|чт|пт|сб|вс)(?:\s*-\s*(пн|вт|ср|чт|пт|сб|вс))?\s+"
                   r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class HoursError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Span:
    first: int  # weekday 0 = Monday
    last: int
    start: int  # minutes after midnight
    end: int


def parse_hours(text: str) -> tuple[Span, ...]:
    """"пн-пт 09:00-20:00; сб 10:00-15:00" -> spans; "" -> () (always open)."""
    spans = []
    for part in (p for p in re.split(r"[;\n]", text.lower()) if p.strip()):
        m = _SPAN.match(part)
        if m is None:
            raise HoursError(f"Часы работы: «{part.strip()[:40]}» — пишите как «пн-пт 09:00-20:00; сб 10:00-15:00»")
        first = WEEKDAYS.index(m.group(1))
        last = WEEKDAYS.index(m.group(2)) if m.group(2) else first
        h1, m1, h2, m2 = (int(m.group(i)) for i in range(3, 7))
        if last < first or h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise HoursError(f"Часы работы: «{part.strip()[:40]}» — неверный день или время")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise HoursError(f"Часы работы: «{part.strip()[:40]}» — конец раньше начала")
        spans.append(Span(first, last, start, end))
    return tuple(spans)


def parse_holidays(text: str) -> tuple[date, ...]:
    """"31.12.2026, 01.01.2027" (or ISO dates) -> dates."""
    out = []
    for item in (i for i in re.split(r"[,;\s]+", text) if i):
        try:
            out.append(date.fromisoformat(item) if "-" in item else datetime.strptime(item, "%d.%m.%Y").date())
        except ValueError:
            raise HoursError(f"Праздники: «{item[:20]}» — дата как 31.12.2026") from None
    return tuple(sorted(set(out)))


def is_open(spans: tuple[Span, ...], holidays: tuple[date, ...], at: datetime) -> bool:
    """Open at this local time? No hours at all: always open."""
    if not spans:
        return True
    if at.date() in holidays:
        return False
    minute = at.hour * 60 + at.minute
    return any(s.first <= at.weekday() <= s.last and s.start <= minute < s.end for s in spans)


def _hhmm(minutes: int) -> str:
    # Asterisk's time ranges end inclusively at the minute named: 20:00 open means until 19:59
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def asterisk_steps(spans: tuple[Span, ...], holidays: tuple[date, ...], tz: str, today: date, *,
                   open_label: str, closed_label: str) -> list[str]:
    """Dialplan steps that jump to ``open_label`` inside the hours and to ``closed_label``
    outside them (holidays first). Asterisk's time match knows no year: only the holidays of
    the coming year are written (``today`` is the render's date), so 31.12.2026 does not close
    31.12.2027 too."""
    if not spans:
        return [f"Goto({open_label})"]
    steps = [f"GotoIfTime(*,*,{d.day},{ASTERISK_MONTHS[d.month - 1]},{tz}?{closed_label})" for d in holidays
             if 0 <= (d - today).days < 365]
    for s in spans:
        days = ASTERISK_DAYS[s.first] + (f"-{ASTERISK_DAYS[s.last]}" if s.last != s.first else "")
        steps.append(f"GotoIfTime({_hhmm(s.start)}-{_hhmm(s.end - 1)},{days},*,*,{tz}?{open_label})")
    steps.append(f"Goto({closed_label})")
    return steps

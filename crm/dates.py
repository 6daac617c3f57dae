"""Dates typed by people (forms, query strings): parsed, and kept within years a clinic can
mean. Year 1 or 9999 is a typo or a probe; left through, it overflows datetime arithmetic
(a day added, a time zone applied) into a server error."""

from __future__ import annotations

from datetime import date, datetime
from typing import TypeVar

EARLIEST_YEAR, LATEST_YEAR = 1900, 2999
D = TypeVar("D", date, datetime)


def checked(value: D) -> D:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"year {value.year} is out of range")
    return value


def parse_day(text: str) -> date:
    """``2026-11-20`` or ``20.11.2026`` (as people in Russia type it) -> date; ValueError for
    anything else or an absurd year."""
    text = text.strip()
    if len(text) == 10 and text[2] == "." and text[5] == ".":
        return checked(datetime.strptime(text, "%d.%m.%Y").date())
    return checked(date.fromisoformat(text))


def parse_moment(text: str) -> datetime:
    """An ISO date-time (naive or not) or ``20.11.2026 14:30`` -> datetime; ValueError as above."""
    text = text.strip()
    if len(text) >= 16 and text[2] == "." and text[5] == ".":
        return checked(datetime.strptime(text[:16], "%d.%m.%Y %H:%M"))
    return checked(datetime.fromisoformat(text))

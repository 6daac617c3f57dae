"""One formatting for the whole panel (web/formatting.py) and dates typed the Russian way
(crm/dates.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm.dates import parse_day, parse_moment
from web.formatting import date_time, day, days_in_text, duration, phone

MSK = ZoneInfo("Europe/Moscow")


def test_moments_are_the_clinic_s_wall_clock() -> None:
    assert date_time("2026-12-01T22:30:00+00:00", MSK) == "02.12.2026 01:30"  # stored UTC, shown in Moscow
    assert date_time("2026-12-02 00:11:39", MSK) == "02.12.2026 00:11"  # already the clinic's wall time
    assert date_time("2026-12-02T10:00", MSK) == "02.12.2026 10:00"  # an appointment's start
    assert date_time(datetime(2026, 12, 1, 22, 30, tzinfo=UTC).timestamp(), MSK) == "02.12.2026 01:30"
    assert date_time(datetime(2026, 3, 4, 5, 6), None) == "04.03.2026 05:06"
    assert date_time(None) == "" and date_time("") == ""
    assert date_time("сейчас") == "сейчас"  # not a moment: shown as it is
    assert date_time("2026-11-02") == "02.11.2026" and date_time(date(2026, 11, 2)) == "02.11.2026"  # a day


def test_the_wall_time_fast_path_formats_as_parsing_does() -> None:
    """The history's rows take a shortcut for a clinic wall time; every moment of two years
    (each hour's minute 59, days 1-31) and a few wrong dates give what parsing gives."""
    start = datetime(2025, 1, 1, 0, 59)
    for hours in range(0, 2 * 366 * 24, 7):
        moment = start + timedelta(hours=hours)
        for text in (moment.isoformat(" ", "seconds"), moment.isoformat(timespec="minutes")):
            assert date_time(text) == moment.strftime("%d.%m.%Y %H:%M"), text
    for wrong in ("2026-02-29 10:00:00", "2026-04-31 10:00", "2026-13-01 10:00", "2026-12-01 24:00",
                  "0000-01-01 10:00", "2026-12-01 10:00:00.5", "2026-12-01 10:00:60", "٢٠٢٦-12-01 10:00"):
        try:
            expected = datetime.fromisoformat(wrong).strftime("%d.%m.%Y %H:%M")
        except ValueError:
            expected = wrong  # shown as it is
        assert date_time(wrong) == expected, wrong


def test_days() -> None:
    assert day("1985-03-14") == "14.03.1985" and day(date(2026, 1, 2)) == "02.01.2026"
    assert day("2026-12-01T22:30:00+00:00", MSK) == "02.12.2026"
    assert day(None) == "" and day("не знаю") == "не знаю"
    assert days_in_text("2026-12-01..2026-12-02") == "01.12.2026..02.12.2026"


def test_phone_numbers() -> None:
    assert phone("+79161234567") == "+7 916 123-45-67"
    assert phone("+74951110001") == "+7 495 111-00-01"
    assert phone("+4930123456") == "+49 30 123456"  # foreign: international
    assert phone("101") == "101" and phone("") == "" and phone(None) == ""  # an extension, nothing
    assert phone("+1") == "+1"  # not a possible number: as it is
    assert phone("74951110001") == "+7 495 111-00-01"  # a clinic number as the dialplan keeps it


def test_the_mobile_fast_path_formats_as_the_library_does() -> None:
    """Russian mobile numbers skip the library (a page of them rendered 10x slower): on every
    operator prefix and random subscribers, the same text as phonenumbers gives."""
    import random

    import phonenumbers

    rnd = random.Random(7)
    for prefix in range(900, 1000):
        for _ in range(20):
            text = f"+7{prefix}{rnd.randrange(10**7):07d}"
            expected = phonenumbers.format_number(phonenumbers.parse(text, None),
                                                  phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            assert phone(text) == expected, text
            assert phone(text[1:]) == expected  # as the dialplan keeps it


def test_durations() -> None:
    assert duration(8) == "0:08" and duration(750) == "12:30" and duration(3723) == "1:02:03"
    assert duration(None) == "" and duration("x") == "x"


def test_typed_dates_both_ways() -> None:
    assert parse_day("14.03.1985") == parse_day("1985-03-14") == date(1985, 3, 14)
    assert parse_moment("02.12.2026 14:30") == datetime(2026, 12, 2, 14, 30)
    for bad in ("31.02.2026", "14.03.0001", "1.3.85", "", "2026-13-01"):
        with pytest.raises(ValueError):
            parse_day(bad)

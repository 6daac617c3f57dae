"""What a booking or a move may be (seed 001's schedule): the same checks for both."""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_MINUTES = 480  # one appointment lasts at most a working day


class BookingError(ValueError):
    """A booking the schedule cannot take; the message is shown to the administrator."""


def slot_end(starts_at: datetime, minutes: int, now: float) -> datetime:
    """The end of a slot that may be booked or moved to, or a BookingError saying why not."""
    if minutes <= 0 or minutes > MAX_MINUTES:
        raise BookingError("Неверная длительность приёма")
    ends_at = starts_at + timedelta(minutes=minutes)
    if ends_at.timestamp() <= now:
        raise BookingError("Это время уже прошло")
    return ends_at

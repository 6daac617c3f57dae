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


def default_guardian(guardians: list[tuple[int, list[str]]], caller: str | None,
                     last_guardian: int | None) -> int | None:
    """Seed 000: booking a ward fills in «the guardian who was last linked or … previously
    selected»: the guardian whose number is calling, else the one of the ward's last
    appointment, else the first. ``guardians``: (id, phone numbers) of the ward's guardians."""
    if caller:
        for gid, numbers in guardians:
            if caller in numbers:
                return gid
    ids = [gid for gid, _ in guardians]
    if last_guardian in ids:
        return last_guardian
    return ids[0] if ids else None

"""The time windows of seeds 000/001/004 that link one contact to another, each named once.

Every predicate takes epoch seconds. The SQL of ``crm.calls`` and the reports filter with the
same constants; ``tests/unit/test_rules_windows.py`` checks SQL and predicate agree at the edges.
"""

from __future__ import annotations

MISSED_CALL_PROCESSING = 24 * 3600  # a missed call is processed by a conversation within a day
APPOINTMENT_LINK = 30 * 60  # an appointment made 30 min before a call's start .. after its end
CANCEL_LINK = 15 * 60  # a cancel or move joins the contact within 15 min (seed 001)
COMMENT_LINK = 5 * 60  # a comment joins a call of its number and direction within 5 min (default)
CRM_ACTION_LINK = 15 * 60  # an outgoing call joins the CRM action done within 15 min after it
CONVERSION_NEARBY = "conversion_nearby"  # the clinic setting widening seed 000's conversion (off)
LONGEST_CONTACT = 24 * 3600  # no contact lasts longer: how far back a change can reach a contact

# what the migrations' ``{{NAME}}`` holes are filled with (their triggers' spans): crm/db.py
SQL_CONSTANTS = {name: str(value) for name, value in (
    ("MISSED_CALL_PROCESSING", MISSED_CALL_PROCESSING), ("APPOINTMENT_LINK", APPOINTMENT_LINK),
    ("LONGEST_CONTACT", LONGEST_CONTACT))}


def missed_call_processed(missed_started: float, conversation_started: float) -> bool:
    """A conversation (an answered call either way) with the number after the missed call and
    within MISSED_CALL_PROCESSING of it makes the missed call «Обработанный»."""
    return missed_started < conversation_started <= missed_started + MISSED_CALL_PROCESSING


def processing_deadline(missed_started: float) -> float:
    """When an unreturned missed call becomes «Необработанный»."""
    return missed_started + MISSED_CALL_PROCESSING


def appointment_converts(*, created: float, call_started: float, call_ended: float, answered: bool,
                         booked_from_call: bool, nearby: bool = False) -> bool:
    """Seed 000's conversion, its three ways: the appointment was booked from the call's card,
    from the schedule during the call, or in a booking panel opened during it and completed after
    (each of them stores the call with the appointment: ``booked_from_call``). With the clinic's
    setting ``nearby`` (CONVERSION_NEARBY) also any appointment made for the call's patient from
    APPOINTMENT_LINK before an answered call started to APPOINTMENT_LINK after it ended, whoever
    booked it."""
    if booked_from_call:
        return True
    return nearby and answered and call_started - APPOINTMENT_LINK <= created <= call_ended + APPOINTMENT_LINK


def appointment_pending(*, created: float, starts: float, cancelled: bool, call_started: float) -> bool:
    """Seed 000's «Был записан»: when the call started, the patient already had an appointment
    (made before the call, for a time after its start, not cancelled)."""
    return not cancelled and created < call_started < starts


def comment_joins(typed_at: float, call_started: float, window: float = COMMENT_LINK) -> bool:
    """Seed 004: a comment entered by hand joins a call of its number and direction that started
    within ``window`` of the time typed, either side (inclusive)."""
    return abs(call_started - typed_at) <= window


def within_after(first: float, then: float, window: float) -> bool:
    """``then`` happened at ``first`` or up to ``window`` seconds after it (inclusive)."""
    return first <= then <= first + window

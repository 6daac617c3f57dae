"""One table of the Q.850 hang-up causes that matter to a clinic, and what each means. Pure.

Asterisk reports a cause on every hang-up (AMI ``Hangup``/``DialEnd``, ARI ``ChannelDestroyed``).
The call tracker reads it for a desk phone's leg, the robot for a patient's call; both go
through :func:`meaning`, so a cause never means two things. What each consumer does with a
meaning is its own rule, written next to it (:func:`leg_outcome`, :func:`robot_outcome`).
"""

from __future__ import annotations

NORMAL = "normal"  # the call ended after it was set up
BUSY = "busy"  # the other side was busy (or declined while busy)
NO_ANSWER = "no_answer"  # it rang and nobody answered in time
ANSWERED_ELSEWHERE = "answered_elsewhere"  # a colleague's phone took the call (ring-all)
REJECTED = "rejected"  # the called person declined the call
ABSENT = "absent"  # the phone is not there: switched off, out of coverage, unregistered
UNREACHABLE = "unreachable"  # no such number, no route, the network failed
UNKNOWN = "unknown"

CAUSES: dict[int, str] = {
    0: NO_ANSWER,  # Asterisk's "not defined": a dial that timed out without a cause
    1: UNREACHABLE,  # unallocated number
    3: UNREACHABLE,  # no route to destination
    16: NORMAL,
    17: BUSY,
    18: NO_ANSWER,  # no user responding
    19: NO_ANSWER,  # no answer from user (user alerted)
    20: ABSENT,  # subscriber absent
    21: REJECTED,  # call rejected
    26: ANSWERED_ELSEWHERE,  # non-selected user clearing
    27: UNREACHABLE,  # destination out of order
    34: UNREACHABLE,  # no circuit available
    38: UNREACHABLE,  # network out of order
    41: UNREACHABLE,  # temporary failure
    42: UNREACHABLE,  # switching equipment congestion
}


def meaning(cause: int) -> str:
    return CAUSES.get(cause, UNKNOWN)


def leg_outcome(cause: int, rang: bool) -> str:
    """A desk phone's leg that ended unanswered: ``busy``, ``answered_elsewhere``, ``failed``
    (it never rang: unreachable, or declined before ringing) or ``no_answer``."""
    m = meaning(cause)
    if m in (BUSY, ANSWERED_ELSEWHERE):
        return m
    if not rang and m in (ABSENT, UNREACHABLE, REJECTED):
        return "failed"
    return NO_ANSWER


def robot_outcome(cause: int) -> str:
    """A robot call to a patient that was never answered: ``busy`` and ``no_answer`` are tried
    again later (a declined call or a phone switched off counts as not answered: the patient
    may pick up next time); anything else is ``failed`` and goes to the messages at once."""
    m = meaning(cause)
    if m == BUSY:
        return "busy"
    if m in (NO_ANSWER, REJECTED, ABSENT):
        return "no_answer"
    return "failed"


# A soft hang-up's "cause" is Asterisk's reason flag (channel.h), not Q.850: SHUTDOWN means
# Asterisk itself is stopping (``core stop``). 16 is seen on a bridged caller both when
# Asterisk stops and when a transfer or the other side ends the call: it tells nothing.
SOFT_SHUTDOWN = 1 << 2


def ended_by_asterisk(soft_cause: int) -> bool:
    """Whether a ``SoftHangupRequest`` with this cause is Asterisk stopping, not a person."""
    return bool(soft_cause & SOFT_SHUTDOWN)

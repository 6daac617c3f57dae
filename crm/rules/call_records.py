"""What the tracker produces: frozen call records and live changes. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field

from crm.rules.telephony import TRUNK_PREFIX

# call types (the history's "Тип звонка")
INCOMING = "incoming"  # answered incoming
MISSED = "missed"
OUTGOING = "outgoing"  # answered outgoing
OUTGOING_UNANSWERED = "outgoing_unanswered"
# click-to-call whose own desk phone never answered: the patient was never dialled, so it is
# nobody's unanswered call to the patient and stays out of the statistics
OUTGOING_NOT_CONNECTED = "outgoing_not_connected"
INTERNAL = "internal"
CALL_TYPES = (INCOMING, MISSED, OUTGOING, OUTGOING_UNANSWERED, OUTGOING_NOT_CONNECTED, INTERNAL)

# leg outcomes
ANSWERED = "answered"
NO_ANSWER = "no_answer"  # rang, nobody picked up (timeout, or the caller gave up)
ANSWERED_ELSEWHERE = "answered_elsewhere"  # a colleague took it (ringall)
BUSY = "busy"
FAILED = "failed"  # unreachable / congestion: the phone never rang

HANGUP_CALLER = "caller"
HANGUP_CALLEE = "callee"
HANGUP_SYSTEM = "system"
LINK_LOST = "link_lost"  # a record's source: Asterisk died with the call, no CDR row; the tracker's view


def call_type(direction: str, *, answered: bool, patient_dialled: bool = True) -> str:
    """The call's type, one classification for the tracker and the CDR backfill. ``answered``:
    a desk phone answered (incoming) or the patient did (outgoing); ``patient_dialled``: an
    outgoing call reached the trunk at all (a click-to-call whose own phone never answered
    did not)."""
    if direction == "incoming":
        return INCOMING if answered else MISSED
    if direction == "outgoing":
        if not patient_dialled:
            return OUTGOING_NOT_CONNECTED
        return OUTGOING if answered else OUTGOING_UNANSWERED
    return INTERNAL


def caller_hidden(direction: str, number_hides_callers: bool) -> bool:
    """Seed 000: calls through a clinic number set to hide callers (a partner's line such as
    ProDoctorov's) «отображаются без номера телефона» wherever they are shown — the history, the
    cards, the home page, «История обращений» and every CSV — even a known patient's."""
    return direction == "incoming" and number_hides_callers


def leg_missed(kind: str, is_trunk: bool, outcome: str) -> bool:
    """Seed 000: when nobody answered, every desk phone that rang missed the call (a busy or
    unreachable phone did not ring; with ring-all, answered by a colleague, nobody missed it)."""
    return kind == MISSED and not is_trunk and outcome == NO_ANSWER


@dataclass(frozen=True, slots=True)
class LegRecord:
    """One phone (or the trunk, for outgoing calls) that was dialled for this call."""

    endpoint: str  # "101", "operator"
    uniqueid: str
    outcome: str
    started_at: float
    answered_at: float | None
    ended_at: float | None
    missed: bool  # counts as missed by this phone's employee


@dataclass(frozen=True, slots=True)
class CallRecord:
    linkedid: str
    direction: str  # incoming | outgoing | internal
    call_type: str
    did: str  # the clinic number it came in on ("" for outgoing)
    caller: str  # raw numbers as Asterisk saw them; the CRM normalises
    callee: str
    queue: str
    legs: tuple[LegRecord, ...]
    answered_by: str  # endpoint of the desk phone that answered (incoming) or placed it
    started_at: float
    answered_at: float | None
    ended_at: float
    wait_seconds: float
    talk_seconds: float
    hangup_by: str
    recording: str
    caller_type: str = ""  # from the FastAGI lookup (patient, patients, employee, ...)
    patient_id: str = ""
    originated_by: str = ""  # the user id of a click-to-call
    linkedids: tuple[str, ...] = ()
    source: str = "ami"  # ami | cdr (backfilled) | link_lost (Asterisk died with it: what the tracker saw)

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    @property
    def missed_by(self) -> tuple[str, ...]:
        return tuple(leg.endpoint for leg in self.legs if leg.missed)


@dataclass(frozen=True, slots=True)
class CallFinished:
    record: CallRecord


@dataclass(frozen=True, slots=True)
class NeedsBackfill:
    """A conversation we saw only in part (we were disconnected): take it from the CDR; if the
    CDR has no row for it (Asterisk died during it), ``fallback``: what the tracker saw."""

    linkedid: str
    ended_at: float
    fallback: CallRecord | None = None


@dataclass(frozen=True, slots=True)
class Anomaly:
    message: str
    linkedid: str = ""


@dataclass(frozen=True, slots=True)
class LiveCall:
    """The state of one call as a desk phone's card shows it."""

    linkedid: str
    direction: str
    endpoint: str  # the desk phone this card is for
    status: str  # ringing | talking | on_hold | dialing | ended
    caller: str
    caller_name: str
    did: str
    queue: str
    caller_type: str
    patient_id: str
    since: float
    outcome: str = ""  # for ended: answered | missed | completed | answered_elsewhere ...


@dataclass(frozen=True, slots=True)
class LiveUpdate:
    call: LiveCall


@dataclass(frozen=True, slots=True)
class QueueWaiting:
    """Callers waiting in a queue ("Ещё N на линии")."""

    queue: str
    count: int
    at: float


Change = CallFinished | NeedsBackfill | Anomaly | LiveUpdate | QueueWaiting


class TrunkNames(frozenset[str]):
    """The endpoints that are the outside world: the demo's ``operator`` and every provider set
    up in the panel (``trunk-<id>``, crm.rules.telephony), whichever exist when a call comes."""

    def __contains__(self, endpoint: object) -> bool:
        return isinstance(endpoint, str) and (endpoint.startswith(TRUNK_PREFIX) or frozenset.__contains__(self, endpoint))


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    trunks: frozenset[str] = field(default_factory=lambda: TrunkNames({"operator"}))
    finished_memory: int = 10_000  # how many finished linkedids to remember for stray events


def connected_seconds(spans: list[tuple[float, float]], since: float, until: float) -> float:
    """How long the patient was connected: the union of the answered parties' spans (overlaps
    counted once), clipped to [since, until]; the gaps between them (a transfer nobody took,
    ringing before the patient comes back) are not talk. Shared by the tracker and the CDR
    backfill, which add up the same spans."""
    total, reach = 0.0, since
    for start, end in sorted((max(a, since), min(b, until)) for a, b in spans):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total

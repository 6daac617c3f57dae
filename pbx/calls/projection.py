"""What the tracker shows and stores of a conversation, as pure projections: a desk phone's
live card, and the frozen call record when it ends."""

from __future__ import annotations

from crm.rules.call_records import (
    HANGUP_SYSTEM,
    INCOMING,
    NO_ANSWER,
    OUTGOING,
    CallRecord,
    LegRecord,
    LiveCall,
    call_type,
    connected_seconds,
    leg_missed,
)
from pbx.calls import conversation as cv
from pbx.calls.conversation import DONE, TALKING, Conversation

Trunks = frozenset[str] | tuple[str, ...]


def card_status(conv: Conversation, endpoint: str, trunks: Trunks) -> str:
    """The status of ``endpoint``'s card: dialing, ringing, talking, on_hold or ended."""
    direction = cv.direction(conv, trunks)
    leg = next((lg for lg in conv.legs.values() if lg.endpoint == endpoint), None)
    if direction == OUTGOING and leg is None:
        return "talking" if conv.answered_at else "dialing"
    if leg is None or leg.state == DONE:
        return "ended"
    if leg.state == TALKING or (direction == OUTGOING and conv.answered_at):
        return "on_hold" if conv.on_hold else "talking"
    return "ringing" if direction == INCOMING else "dialing"


def live_call(conv: Conversation, endpoint: str, status: str, at: float, outcome: str, trunks: Trunks) -> LiveCall:
    direction = cv.direction(conv, trunks)
    number, name = cv.caller(conv)
    if direction == OUTGOING:
        number, name = cv.callee(conv, trunks), ""
    return LiveCall(
        linkedid=conv.linkedid, direction=direction, endpoint=endpoint, status=status,
        caller=number, caller_name=name, did=cv.did(conv, trunks) if direction == INCOMING else "", queue=conv.queue,
        caller_type=conv.vars.get("CLINIC_CALLER_TYPE", ""),
        patient_id=conv.vars.get("CLINIC_PATIENT_ID", ""), since=at, outcome=outcome,
    )


def record_of(conv: Conversation, ended: float, trunks: Trunks) -> CallRecord:
    direction = cv.direction(conv, trunks)
    caller, _ = cv.caller(conv)
    origin = conv.channels.get(conv.origin)
    answered_at = conv.answered_at
    answered_leg = conv.legs.get(conv.answered_leg)
    if direction == OUTGOING:
        trunk_legs = [lg for lg in conv.legs.values() if lg.endpoint in trunks]
        answered_trunk = next((lg for lg in trunk_legs if lg.answered_at is not None), None)
        answered_at = answered_trunk.answered_at if answered_trunk else None
        kind = call_type(OUTGOING, answered=answered_at is not None, patient_dialled=bool(trunk_legs))
        answered_by = origin.endpoint if origin is not None else ""
        caller = answered_by
        callee = cv.callee(conv, trunks)
        talk_chan = answered_trunk.uniqueid if answered_trunk else ""
    elif direction == INCOMING:
        kind = call_type(INCOMING, answered=answered_at is not None)
        answered_by = answered_leg.endpoint if answered_leg is not None else ""
        callee = cv.did(conv, trunks)
        talk_chan = conv.answered_leg
    else:
        kind = call_type(direction, answered=answered_at is not None)
        answered_by = answered_leg.endpoint if answered_leg is not None else ""
        callee = next(iter(lg.endpoint for lg in conv.legs.values()), "")
        caller = origin.endpoint if origin is not None else caller
        talk_chan = conv.answered_leg
    # A party hanging up shows as a (non-soft) HangupRequest on its channel; when the
    # switch ends the call (a queue that gave up) there is only a SoftHangupRequest.
    # QueueCallerAbandon cannot tell them apart: Asterisk sends it on a timeout too.
    hangup_by = conv.hangup_by or HANGUP_SYSTEM
    talk = 0.0
    if answered_at is not None:
        talk = talk_seconds(conv, answered_at, ended, talk_chan, outgoing=direction == OUTGOING)
    legs = tuple(
        LegRecord(
            endpoint=lg.endpoint, uniqueid=lg.uniqueid, outcome=lg.outcome or NO_ANSWER,
            started_at=lg.started_at, answered_at=lg.answered_at, ended_at=lg.ended_at,
            missed=leg_missed(kind, lg.endpoint in trunks, lg.outcome or NO_ANSWER),
        )
        for lg in sorted(conv.legs.values(), key=lambda x: x.started_at)
    )
    return CallRecord(
        linkedid=conv.linkedid,
        direction=direction,
        call_type=kind,
        # incoming: the number called; outgoing: the clinic line it left by (the dialplan's)
        did=cv.did(conv, trunks) if direction == INCOMING else conv.vars.get("CLINIC_DID", "") if direction == OUTGOING else "",
        caller=caller,
        callee=callee,
        queue=conv.queue,
        legs=legs,
        answered_by=answered_by,
        started_at=conv.started_at,
        answered_at=answered_at,
        ended_at=ended,
        wait_seconds=round((answered_at or ended) - conv.started_at, 3),
        talk_seconds=round(talk, 3),
        hangup_by=hangup_by,
        recording=conv.vars.get("CLINIC_RECORDING", "") if answered_at is not None else "",
        caller_type=conv.vars.get("CLINIC_CALLER_TYPE", ""),
        patient_id=conv.vars.get("CLINIC_PATIENT_ID", ""),
        originated_by=conv.vars.get("CLINIC_ORIGINATED_BY", ""),
        linkedids=tuple(conv.linkedids),
    )


def talk_seconds(conv: Conversation, answered_at: float, ended: float, talk_chan: str, *, outgoing: bool) -> float:
    """The patient's answered time with the clinic, until the patient's side hangs up, as
    Asterisk's CDR rows of the patient's channel add up: a transfer hands the patient to a
    colleague and the talk goes on with them (the colleague's row bills from its dialling);
    the ring of a transfer nobody took, before the patient comes back to the transferer, is
    not talk. The patient's side is the caller of an incoming or internal call, the answered
    trunk of an outgoing one."""
    def end(uid: str) -> float:
        chan = conv.channels.get(uid)
        return chan.ended_at if chan is not None and chan.ended_at is not None else ended

    # every other party that answered: colleagues' phones, or a doctor's mobile by the operator.
    # One dialled once the patient was up (a transfer) bills from its dialling, as its CDR row
    # does (the patient's channel was answered already); one nobody answered is no talk.
    others = [(max(lg.started_at, answered_at), end(lg.uniqueid)) for lg in conv.legs.values()
              if lg.answered_at is not None and lg.uniqueid != talk_chan]
    patient, first = (talk_chan, conv.origin) if outgoing else (conv.origin, talk_chan)
    return connected_seconds([(answered_at, end(first)), *others], answered_at, end(patient))

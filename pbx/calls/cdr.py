"""Call records rebuilt from Asterisk's own CDR rows (``cdr_sqlite3_custom``). Pure.

Used to backfill calls that ended while clinic-pbx was not listening to AMI. The CDR knows
less than AMI (no hang-up side, ring times only through the leg rows), so such records carry
``source = "cdr"``. Times come from the ``*_u`` epoch columns our config adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crm.rules.call_records import (
    ANSWERED,
    ANSWERED_ELSEWHERE,
    BUSY,
    FAILED,
    INCOMING,
    INTERNAL,
    NO_ANSWER,
    OUTGOING,
    CallRecord,
    LegRecord,
    TrackerConfig,
    call_type,
    connected_seconds,
    leg_missed,
)
from pbx.calls.conversation import endpoint_of

DISPOSITION = {"ANSWERED": ANSWERED, "NO ANSWER": NO_ANSWER, "BUSY": BUSY, "FAILED": FAILED,
               "CONGESTION": FAILED}

Row = Mapping[str, Any]


def _f(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def _direction(first: Row, rows: Sequence[Row], cfg: TrackerConfig) -> str:
    declared = str(first.get("clinic_dir") or "")
    if declared in (INCOMING, OUTGOING, INTERNAL):
        return declared
    if endpoint_of(str(first.get("channel") or "")) in cfg.trunks:
        return INCOMING
    if any(endpoint_of(str(r.get("dstchannel") or "")) in cfg.trunks for r in rows):
        return OUTGOING
    return INTERNAL


def _legs(legs_rows: Sequence[Row], answered_at: float | None) -> list[tuple[str, Row, str]]:
    """(endpoint, row, outcome) of every dialled phone or trunk."""
    legs = []
    for r in legs_rows:
        outcome = DISPOSITION.get(str(r.get("disposition")), NO_ANSWER)
        leg_end = _f(r.get("end_u"))
        if (outcome == NO_ANSWER and answered_at is not None and leg_end is not None
                and abs(leg_end - answered_at) <= 1.0):
            outcome = ANSWERED_ELSEWHERE  # it stopped ringing when a colleague answered
        legs.append((endpoint_of(str(r["dstchannel"])), r, outcome))
    return legs


@dataclass(frozen=True)
class _Sides:
    kind: str
    caller: str
    callee: str
    answered_by: str
    answered_at: float | None
    talk_row: Row | None


def _sides(direction: str, first: Row, legs: list[tuple[str, Row, str]], answered_row: Row | None,
           answered_at: float | None, cfg: TrackerConfig) -> _Sides | None:
    origin_ep = endpoint_of(str(first.get("channel") or ""))
    desk_answered = endpoint_of(str(answered_row["dstchannel"])) if answered_row else ""
    if direction == OUTGOING:
        trunk = next(((e, r, o) for e, r, o in legs if e in cfg.trunks and o == ANSWERED), None)
        at = _f(trunk[1].get("answer_u")) if trunk else None
        kind = call_type(OUTGOING, answered=at is not None, patient_dialled=any(e in cfg.trunks for e, _, _ in legs))
        callee = str(first.get("clinic_callee") or first.get("dst") or "")
        return _Sides(kind, origin_ep, callee, origin_ep, at, trunk[1] if trunk else None)
    if direction == INCOMING:
        return _Sides(call_type(INCOMING, answered=answered_at is not None), str(first.get("src") or ""),
                      str(first.get("clinic_did") or ""), desk_answered, answered_at, answered_row)
    if not legs:
        return None
    return _Sides(call_type(INTERNAL, answered=answered_at is not None), origin_ep, legs[0][0], desk_answered,
                  answered_at, answered_row)


def _talk(legs_rows: Sequence[Row], talk_row: Row, outgoing: bool, answered_at: float, ended: float) -> float:
    """While the patient's channel (the caller's, or an outgoing call's answered trunk) was
    answered by someone: each answered row of it bills from its own answer, so a transfer to a
    colleague adds a row and the talk goes on in it, and the ring between is not talk."""
    patient = str(talk_row.get("dstchannel" if outgoing else "channel") or "")
    spans = [(_f(r.get("answer_u")) or answered_at, _f(r.get("end_u")) or ended) for r in legs_rows
             if r.get("disposition") == "ANSWERED" and patient in (r.get("channel"), r.get("dstchannel"))]
    return connected_seconds(spans or [(answered_at, ended)], answered_at, ended)


def record_from_cdr(rows: Sequence[Row], config: TrackerConfig | None = None) -> CallRecord | None:
    """One call from all CDR rows sharing a linkedid; None when it is no clinic call (robots,
    test channels) or the rows are unusable."""
    cfg = config or TrackerConfig()
    rows = sorted(rows, key=lambda r: (int(r.get("sequence") or 0), _f(r.get("start_u")) or 0))
    if not rows or not str(rows[0].get("channel") or "").startswith("PJSIP/"):
        return None
    first = rows[0]
    starts = [t for r in rows if (t := _f(r.get("start_u"))) is not None]
    ends = [t for r in rows if (t := _f(r.get("end_u"))) is not None]
    if not starts or not ends:
        return None
    started, ended = min(starts), max(ends)
    direction = _direction(first, rows, cfg)
    legs_rows = [r for r in rows if r.get("dstchannel")]
    answered_row = next((r for r in legs_rows if r.get("disposition") == "ANSWERED"
                         and _f(r.get("answer_u")) is not None), None)
    legs = _legs(legs_rows, _f(answered_row.get("answer_u")) if answered_row else None)
    sides = _sides(direction, first, legs, answered_row,
                   _f(answered_row.get("answer_u")) if answered_row else None, cfg)
    if sides is None:
        return None
    answered_at = sides.answered_at
    talk = 0.0
    if sides.talk_row is not None and answered_at is not None:
        talk = _talk(legs_rows, sides.talk_row, direction == OUTGOING, answered_at, ended)
    queue = str(first.get("lastdata") or "").split(",", 1)[0] if str(first.get("lastapp")) == "Queue" else ""
    leg_records = tuple(
        LegRecord(
            endpoint=e, uniqueid=str(r.get("dstchannel")), outcome=o,
            started_at=_f(r.get("start_u")) or started, answered_at=_f(r.get("answer_u")),
            ended_at=_f(r.get("end_u")), missed=leg_missed(sides.kind, e in cfg.trunks, o),
        )
        for e, r, o in legs
    )
    linkedid = str(first.get("linkedid") or "")
    return CallRecord(
        linkedid=linkedid, direction=direction, call_type=sides.kind,
        did=sides.callee if direction == INCOMING else str(first.get("clinic_did") or "") if direction == OUTGOING else "",
        caller=sides.caller, callee=sides.callee,
        queue=queue, legs=leg_records, answered_by=sides.answered_by, started_at=started,
        answered_at=answered_at, ended_at=ended, wait_seconds=round((answered_at or ended) - started, 3),
        talk_seconds=round(talk, 3), hangup_by="",
        recording=f"{first.get('uniqueid')}.wav" if answered_at is not None else "",
        linkedids=(linkedid,), source="cdr",
    )

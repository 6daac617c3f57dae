"""Call records rebuilt from Asterisk's own CDR rows (``cdr_sqlite3_custom``). Pure.

Used to backfill calls that ended while clinic-pbx was not listening to AMI. The CDR knows
less than AMI (no hang-up side, ring times only through the leg rows), so such records carry
``source = "cdr"``. Times come from the ``*_u`` epoch columns our config adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pbx.calls.conversation import endpoint_of
from pbx.calls.records import (
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
    leg_missed,
)

DISPOSITION = {"ANSWERED": ANSWERED, "NO ANSWER": NO_ANSWER, "BUSY": BUSY, "FAILED": FAILED,
               "CONGESTION": FAILED}

Row = Mapping[str, Any]


def _f(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def record_from_cdr(rows: Sequence[Row], config: TrackerConfig | None = None) -> CallRecord | None:
    """One call from all CDR rows sharing a linkedid; None when it is no clinic call (robots,
    test channels) or the rows are unusable."""
    cfg = config or TrackerConfig()
    rows = sorted(rows, key=lambda r: (int(r.get("sequence") or 0), _f(r.get("start_u")) or 0))
    if not rows:
        return None
    first = rows[0]
    origin_chan = str(first.get("channel") or "")
    origin_ep = endpoint_of(origin_chan)
    direction = str(first.get("clinic_dir") or "")
    if direction not in (INCOMING, OUTGOING, INTERNAL):
        if origin_ep in cfg.trunks:
            direction = INCOMING
        elif any(endpoint_of(str(r.get("dstchannel") or "")) in cfg.trunks for r in rows):
            direction = OUTGOING
        else:
            direction = INTERNAL
    if not origin_chan.startswith("PJSIP/"):
        return None
    starts = [t for r in rows if (t := _f(r.get("start_u"))) is not None]
    ends = [t for r in rows if (t := _f(r.get("end_u"))) is not None]
    if not starts or not ends:
        return None
    started, ended = min(starts), max(ends)
    legs_rows = [r for r in rows if r.get("dstchannel")]
    answered_row = next((r for r in legs_rows if r.get("disposition") == "ANSWERED"
                         and _f(r.get("answer_u")) is not None), None)
    answered_at = _f(answered_row.get("answer_u")) if answered_row else None
    legs = []
    for r in legs_rows:
        outcome = DISPOSITION.get(str(r.get("disposition")), NO_ANSWER)
        leg_end = _f(r.get("end_u"))
        if (outcome == NO_ANSWER and answered_at is not None and leg_end is not None
                and abs(leg_end - answered_at) <= 1.0):
            outcome = ANSWERED_ELSEWHERE  # it stopped ringing when a colleague answered
        endpoint = endpoint_of(str(r["dstchannel"]))
        legs.append((endpoint, r, outcome))
    if direction == OUTGOING:
        trunk = next(((e, r, o) for e, r, o in legs if e in cfg.trunks and o == ANSWERED), None)
        answered_at = _f(trunk[1].get("answer_u")) if trunk else None
        kind = call_type(OUTGOING, answered=answered_at is not None,
                         patient_dialled=any(e in cfg.trunks for e, _, _ in legs))
        caller, callee = origin_ep, str(first.get("clinic_callee") or first.get("dst") or "")
        answered_by = origin_ep
        talk_row = trunk[1] if trunk else None
    elif direction == INCOMING:
        kind = call_type(INCOMING, answered=answered_at is not None)
        caller, callee = str(first.get("src") or ""), str(first.get("clinic_did") or "")
        answered_by = endpoint_of(str(answered_row["dstchannel"])) if answered_row else ""
        talk_row = answered_row
    else:
        if not legs:
            return None
        kind = call_type(INTERNAL, answered=answered_at is not None)
        caller, callee = origin_ep, legs[0][0]
        answered_by = endpoint_of(str(answered_row["dstchannel"])) if answered_row else ""
        talk_row = answered_row
    talk = 0.0
    if talk_row is not None and answered_at is not None:
        end = _f(talk_row.get("end_u")) or ended
        talk = max(0.0, end - answered_at)
    queue = ""
    if str(first.get("lastapp")) == "Queue":
        queue = str(first.get("lastdata") or "").split(",", 1)[0]
    leg_records = tuple(
        LegRecord(
            endpoint=e, uniqueid=str(r.get("dstchannel")), outcome=o,
            started_at=_f(r.get("start_u")) or started, answered_at=_f(r.get("answer_u")),
            ended_at=_f(r.get("end_u")),
            missed=leg_missed(kind, e in cfg.trunks, o),
        )
        for e, r, o in legs
    )
    linkedid = str(first.get("linkedid") or "")
    return CallRecord(
        linkedid=linkedid, direction=direction, call_type=kind,
        did=callee if direction == INCOMING else "", caller=caller, callee=callee, queue=queue,
        legs=leg_records, answered_by=answered_by, started_at=started, answered_at=answered_at,
        ended_at=ended, wait_seconds=round((answered_at or ended) - started, 3),
        talk_seconds=round(talk, 3), hangup_by="",
        recording=f"{first.get('uniqueid')}.wav" if answered_at is not None else "",
        linkedids=(linkedid,), source="cdr",
    )

"""Property-based tests (hypothesis) of the AMI framing, the normaliser and the tracker on
arbitrary bytes, huge headers, missing fields and shuffled or dropped events: never a crash,
never a malformed record, and the framing never depends on where the reads were cut."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.rules.call_records import CALL_TYPES, CallFinished, CallRecord
from pbx.ami.framing import MAX_MESSAGE_BYTES, AmiFramer
from pbx.ami.recording import read_recording
from pbx.calls.events import normalize
from pbx.calls.tracker import CallTracker

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ami"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVENT_NAMES = ("Newchannel", "VarSet", "Newstate", "NewCallerid", "QueueCallerJoin", "QueueCallerLeave",
               "QueueCallerAbandon", "DialBegin", "DialState", "DialEnd", "AgentRingNoAnswer", "BridgeEnter",
               "BridgeLeave", "HangupRequest", "SoftHangupRequest", "Hangup", "Hold", "Unhold",
               "CoreShowChannel", "AgentConnect", "Cdr", "FullyBooted")
HEADER_NAMES = ("Channel", "Uniqueid", "Linkedid", "CallerIDNum", "CallerIDName", "ConnectedLineNum",
                "Variable", "Value", "ChannelState", "DestChannel", "DestUniqueid", "DialStatus", "Queue",
                "BridgeUniqueid", "Cause", "Count", "Timestamp", "Exten", "Context", "Interface", "Position")


# each recorded scenario as one byte string (real Asterisk traffic, Cyrillic names included)
REAL = {p.stem: b"".join(data for _, data in read_recording(p)) for p in sorted(FIXTURES.glob("*.amiraw"))}


def frame(chunks: list[bytes]) -> list[tuple[str | None, dict[str, str]]]:
    framer = AmiFramer()
    out = []
    for c in chunks:
        out += [(m.event, dict(m.headers)) for m in framer.feed(c)]
    return out


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    pieces, last = [], 0
    for m in marks:
        pieces.append(data[last:m])
        last = m
    pieces.append(data[last:])
    return pieces


@SETTINGS
@given(st.sampled_from(sorted(REAL)), st.lists(st.integers(min_value=0, max_value=10**9), max_size=300))
def test_framing_does_not_depend_on_the_cuts(name: str, points: list[int]) -> None:
    assert frame(cuts(REAL[name], points)) == frame([REAL[name]])


@SETTINGS
@given(st.lists(st.binary(max_size=2000), max_size=30))
def test_framing_survives_arbitrary_bytes(chunks: list[bytes]) -> None:
    framer = AmiFramer()
    for c in chunks:
        for msg in framer.feed(c):
            assert isinstance(msg.headers, dict)
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in msg.headers.items())
    assert framer.buffered <= MAX_MESSAGE_BYTES


def test_a_huge_header_is_dropped_and_the_stream_goes_on() -> None:
    framer = AmiFramer()
    framer.feed(b"Asterisk Call Manager/11.0.0\r\n")
    for _ in range(MAX_MESSAGE_BYTES // 65536 + 2):
        framer.feed(b"Event: Newchannel\r\nCallerIDName: " + b"x" * 65536)
    assert framer.buffered <= MAX_MESSAGE_BYTES and framer.dropped_bytes > 0
    out = framer.feed(b"\r\n\r\nEvent: Hangup\r\nUniqueid: 1.1\r\n\r\n")
    assert out[-1].event == "Hangup"


headers_st = st.dictionaries(
    st.sampled_from(HEADER_NAMES) | st.text(max_size=12),
    st.text(max_size=40) | st.sampled_from(("1.1", "1.2", "PJSIP/101-0001", "PJSIP/operator-0002", "6", "",
                                             "NOANSWER", "ANSWER", "reception-ringall", "-1", "1e309", "nan")),
    max_size=12,
)


def well_formed(record: CallRecord) -> None:
    assert record.linkedid and record.call_type in CALL_TYPES
    assert record.direction in ("incoming", "outgoing", "internal")
    for value in (record.started_at, record.ended_at, record.wait_seconds, record.talk_seconds):
        assert isinstance(value, float) and math.isfinite(value)
    assert record.talk_seconds >= 0 and record.wait_seconds >= -1e-6
    assert record.answered_at is None or math.isfinite(record.answered_at)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(EVENT_NAMES), headers_st, st.floats(0, 1e10)), max_size=80))
def test_normaliser_and_tracker_never_crash_on_hostile_events(events) -> None:
    tracker = CallTracker()
    for name, headers, at in events:
        event = normalize(name, headers, at)
        if event is None:
            continue
        for change in tracker.feed(event):
            if isinstance(change, CallFinished):
                well_formed(change.record)


def real_events(data: bytes) -> list:
    framer = AmiFramer()
    out = []
    for msg in framer.feed(data):
        if msg.event is not None:
            event = normalize(msg.event, msg.headers, 0.0)
            if event is not None:
                out.append(event)
    return out


EVENTS = {name: real_events(data) for name, data in REAL.items()}


@SETTINGS
@given(st.sampled_from(sorted(EVENTS)), st.randoms(use_true_random=False), st.floats(0, 0.5))
def test_tracker_on_shuffled_and_dropped_real_events(name: str, rnd, drop: float) -> None:
    events = [e for e in EVENTS[name] if rnd.random() >= drop]
    rnd.shuffle(events)
    tracker = CallTracker()
    for event in events:
        for change in tracker.feed(event):
            if isinstance(change, CallFinished):
                well_formed(change.record)

"""Tracker rules on hand-made event sequences: anomalies, merges, resync, bad input."""

from __future__ import annotations

import pytest

from crm.rules.call_records import LINK_LOST, Anomaly, CallFinished, LiveUpdate, NeedsBackfill
from pbx.calls import events as ev
from pbx.calls.cdr import record_from_cdr
from pbx.calls.tracker import CallTracker, endpoint_of


def chan(uid: str, name: str, lid: str, at: float, num: str = "79160000000") -> ev.NewChannel:
    return ev.NewChannel(at, uid, lid, name, num, "", "from-operator", "74951110001")


def finished(changes) -> list:
    return [c.record for c in changes if isinstance(c, CallFinished)]


def run(tracker: CallTracker, events) -> list:
    out = []
    for e in events:
        out += tracker.feed(e)
    return out


def incoming_answered(t0: float = 100.0, lid: str = "1.0") -> list[ev.Event]:
    op, ph = "PJSIP/operator-01", "PJSIP/101-02"
    return [
        chan(lid, op, lid, t0),
        ev.QueueJoin(t0 + 0.1, lid, lid, op, "q", 1),
        chan("1.1", ph, lid, t0 + 0.2, "101"),
        ev.DialBegin(t0 + 0.2, lid, lid, op, "1.1", ph, "101"),
        ev.StateChange(t0 + 0.3, "1.1", lid, ph, "Ringing"),
        ev.DialEnd(t0 + 2.0, lid, lid, op, "1.1", ph, "ANSWER"),
        ev.BridgeEnter(t0 + 2.0, "1.1", lid, ph, "b1"),
        ev.BridgeEnter(t0 + 2.0, lid, lid, op, "b1"),
        ev.HangupRequest(t0 + 7.0, "1.1", lid, ph, False, 16),
        ev.Hangup(t0 + 7.0, "1.1", lid, ph, 16, "Normal Clearing"),
        ev.Hangup(t0 + 7.1, lid, lid, op, 16, "Normal Clearing"),
    ]


def test_answered_call_and_hangup_side() -> None:
    [r] = finished(run(CallTracker(), incoming_answered()))
    assert r.call_type == "incoming" and r.answered_by == "101"
    assert r.hangup_by == "callee" and r.talk_seconds == 5.0 and r.wait_seconds == 2.0


@pytest.mark.parametrize(("caller_cause", "phone_cause", "by"),
                         [(16, 4, "system"), (4, 4, "system"), (16, 16, "callee"), (32, 32, "callee"), (1, 1, "callee")])
def test_asterisk_stopping_ends_the_call_not_a_person(caller_cause: int, phone_cause: int, by: str) -> None:
    """#31: ``core stop now`` soft-hangs the channels up with the reason flag 4 (SHUTDOWN) before
    the Hangups and its ``Shutdown`` event (recorded: the bridged caller 16, the desk phone 4):
    the call is ended by the system. Other soft hang-ups (16 also after an attended transfer,
    32 explicit, 1 device) leave the Hangups to decide."""
    evs = incoming_answered()
    op, ph = "PJSIP/operator-01", "PJSIP/101-02"
    evs[8:9] = [ev.HangupRequest(107.0, "1.0", "1.0", op, True, caller_cause),
                ev.HangupRequest(107.0, "1.1", "1.0", ph, True, phone_cause)]
    [r] = finished(run(CallTracker(), evs))
    assert r.hangup_by == by and r.talk_seconds == 5.0


def test_illegal_transition_is_an_anomaly_and_changes_nothing() -> None:
    t = CallTracker()
    evs = incoming_answered()
    # a stray "ringing" after the answer: talking -> ringing is not in the table
    evs.insert(6, ev.StateChange(102.5, "1.1", "1.0", "PJSIP/101-02", "Ringing"))
    evs.insert(6, ev.DialEnd(102.4, "1.0", "1.0", "PJSIP/operator-01", "9.9", "PJSIP/103-09", "ANSWER"))
    out = run(t, evs)
    anomalies = [c for c in out if isinstance(c, Anomaly)]
    assert any("talking -> ringing" in a.message for a in anomalies)
    assert any("without DialBegin" in a.message for a in anomalies)
    [r] = finished(out)
    assert r.answered_by == "101" and r.talk_seconds == 5.0


def test_unknown_events_and_unknown_channels_are_harmless() -> None:
    t = CallTracker()
    assert ev.normalize("RTCPSent", {"Uniqueid": "1"}, 0.0) is None
    assert ev.normalize("Newchannel", {"Channel": "x"}, 0.0) is None  # no Uniqueid
    stray = ev.Hangup(5.0, "77.7", "77.7", "PJSIP/101-99", 16, "")
    assert [type(c) for c in t.feed(stray)] == [Anomaly]
    assert t.active == 0


def test_transfers_name_their_transferers() -> None:
    blind = {"TransfererUniqueid": "1.1", "TransfererLinkedid": "1.0", "TransfererChannel": "PJSIP/101-1",
             "TransfereeUniqueid": "1.2", "Result": "Success"}
    assert ev.normalize("BlindTransfer", blind, 0.0) == ev.Transferred(0.0, "1.1", "1.0", "PJSIP/101-1", ())
    assert ev.normalize("BlindTransfer", {**blind, "Result": "Fail"}, 0.0) is None  # nobody moved
    assert ev.normalize("BlindTransfer", {"Result": "Success"}, 0.0) is None  # no transferer named
    attended = {"OrigTransfererUniqueid": "1.1", "OrigTransfererLinkedid": "1.0",
                "SecondTransfererUniqueid": "3.1", "Result": "Success"}
    assert ev.normalize("AttendedTransfer", attended, 0.0) == ev.Transferred(0.0, "1.1", "1.0", "", ("3.1",))


def test_malformed_values_do_not_raise() -> None:
    e = ev.normalize("QueueCallerJoin", {"Uniqueid": "1", "Linkedid": "1", "Count": "many",
                                         "Timestamp": "soon", "Queue": ["a", "b"]}, 42.0)
    assert isinstance(e, ev.QueueJoin) and e.count == 0 and e.at == 42.0 and e.queue == "b"


def test_two_linkedids_meeting_in_a_bridge_merge() -> None:
    t = CallTracker()
    out = run(t, [
        chan("1.0", "PJSIP/operator-01", "1.0", 10.0),
        chan("2.0", "PJSIP/102-02", "2.0", 11.0, "102"),  # a pickup: its own linkedid
        ev.BridgeEnter(12.0, "1.0", "1.0", "PJSIP/operator-01", "b"),
        ev.BridgeEnter(12.0, "2.0", "2.0", "PJSIP/102-02", "b"),
    ])
    assert t.active == 1
    out += run(t, [ev.Hangup(15.0, "2.0", "2.0", "PJSIP/102-02", 16, ""),
                   ev.Hangup(15.0, "1.0", "1.0", "PJSIP/operator-01", 16, "")])
    [r] = finished(out)
    assert r.linkedid == "1.0" and r.linkedids == ("1.0", "2.0")
    assert r.answered_at == 12.0


def test_resync_ends_what_ended_while_away_and_adopts_new_calls() -> None:
    t = CallTracker()
    run(t, incoming_answered()[:6])  # answered, then the link drops
    t.link_down()
    snap = ev.ChannelSnapshot(0, "5.0", "5.0", "PJSIP/operator-07", "Up", "7903", "", "x", "s", "", 30)
    snap_leg = ev.ChannelSnapshot(0, "5.1", "5.0", "PJSIP/102-08", "Up", "102", "", "x", "s", "", 25)
    out = t.resync([snap, snap_leg], at=500.0)
    assert [c.linkedid for c in out if isinstance(c, NeedsBackfill)] == ["1.0"]
    assert not finished(out)
    cards = [c.call for c in out if isinstance(c, LiveUpdate)]
    assert [(c.endpoint, c.status, c.outcome) for c in cards] == [
        ("101", "ended", "completed"), ("102", "talking", "")]
    out = run(t, [ev.Hangup(510.0, "5.1", "5.0", "PJSIP/102-08", 16, ""),
                  ev.Hangup(510.0, "5.0", "5.0", "PJSIP/operator-07", 16, "")])
    assert [type(c) for c in out if not isinstance(c, LiveUpdate)] == [NeedsBackfill]


def test_a_call_asterisk_died_with_is_kept_as_the_tracker_saw_it() -> None:
    """#31: talking when the link went (Asterisk killed), gone when it came back: besides asking
    the CDR (which has no row: Asterisk never wrote it), the tracker hands over what it saw,
    ended when it lost sight of it, hung up by the system, marked."""
    t = CallTracker()
    run(t, incoming_answered()[:8])  # answered at 102.0, talking
    t.link_down(130.0)
    t.link_down(140.0)  # the first loss is when it was last seen
    out = t.resync([], at=160.0)
    [need] = [c for c in out if isinstance(c, NeedsBackfill)]
    f = need.fallback
    assert f is not None and f.source == LINK_LOST and f.hangup_by == "system"
    assert f.answered_by == "101" and f.ended_at == 130.0 and f.talk_seconds == 28.0
    # a call that merely went on while AMI was away and ends in sight: the CDR alone decides
    t2 = CallTracker()
    run(t2, incoming_answered()[:8])
    t2.link_down(130.0)
    snap = ev.ChannelSnapshot(0, "1.0", "1.0", "PJSIP/operator-01", "Up", "7903", "", "x", "s", "", 60)
    t2.resync([snap], at=160.0)
    out = run(t2, [ev.Hangup(170.0, "1.0", "1.0", "PJSIP/operator-01", 16, "")])
    [need] = [c for c in out if isinstance(c, NeedsBackfill)]
    assert need.fallback is None


def test_endpoint_names() -> None:
    assert endpoint_of("PJSIP/101-0000000a") == "101"
    assert endpoint_of("PJSIP/operator-00000001") == "operator"
    assert endpoint_of("Local/1@patient-sim-00000001;2") == "Local/1@patient-sim"
    assert endpoint_of("garbage") == "garbage"


def cdr_row(**kw) -> dict:
    base = {"linkedid": "9.0", "uniqueid": "9.0", "channel": "PJSIP/operator-1", "src": "79161234567",
            "dst": "s", "clinic_did": "74951110001", "clinic_dir": "incoming", "lastapp": "Queue",
            "lastdata": "reception-ringall,r,,,120", "disposition": "NO ANSWER", "billsec": "0"}
    return base | kw


def test_record_from_cdr_answered_and_missed() -> None:
    rows = [
        cdr_row(dstchannel="PJSIP/101-1", disposition="ANSWERED", start_u="100.0", answer_u="102.0",
                end_u="107.0", sequence="1"),
        cdr_row(dstchannel="PJSIP/102-2", start_u="100.0", answer_u="", end_u="102.01", sequence="2"),
    ]
    r = record_from_cdr(rows)
    assert r is not None and r.source == "cdr"
    assert (r.call_type, r.answered_by, r.talk_seconds, r.queue) == ("incoming", "101", 5.0, "reception-ringall")
    assert {leg.endpoint: leg.outcome for leg in r.legs} == {"101": "answered", "102": "answered_elsewhere"}
    missed = record_from_cdr([
        cdr_row(dstchannel="PJSIP/101-1", start_u="100.0", end_u="104.0", sequence="1"),
        cdr_row(dstchannel="PJSIP/102-2", start_u="105.0", end_u="109.0", sequence="2"),
    ])
    assert missed is not None and missed.call_type == "missed" and missed.missed_by == ("101", "102")


def test_record_from_cdr_after_a_transfer() -> None:
    """101 answered at 102 s and passed the patient to 103 at 104 s; 103 answered at 105 s and
    talked until 111 s: the talk is both answered rows of the patient's channel, each from its
    own answer (the second of 103's ring is no talk: #37, as the tracker counts it)."""
    rows = [
        cdr_row(dstchannel="PJSIP/101-1", disposition="ANSWERED", start_u="100.0", answer_u="102.0",
                end_u="104.0", sequence="1"),
        cdr_row(dstchannel="PJSIP/103-3", disposition="ANSWERED", lastapp="Dial", start_u="104.0",
                answer_u="105.0", end_u="111.0", sequence="3"),
    ]
    r = record_from_cdr(rows)
    assert r is not None and (r.direction, r.call_type, r.answered_by) == ("incoming", "incoming", "101")
    assert r.talk_seconds == 8.0
    assert {leg.endpoint: leg.outcome for leg in r.legs} == {"101": "answered", "103": "answered"}
    nobody = record_from_cdr([rows[0], cdr_row(dstchannel="PJSIP/103-3", lastapp="Dial", start_u="104.0",
                                               end_u="110.0", sequence="3")])
    assert nobody is not None and nobody.talk_seconds == 2.0 and nobody.call_type == "incoming"
    # an outgoing call's patient (the trunk) handed from 101 to 103
    out = record_from_cdr([
        cdr_row(channel="PJSIP/101-1", dstchannel="PJSIP/operator-2", clinic_dir="outgoing", disposition="ANSWERED",
                lastapp="Dial", start_u="100.0", answer_u="103.0", end_u="106.0", sequence="1"),
        cdr_row(channel="PJSIP/operator-2", dstchannel="PJSIP/103-3", clinic_dir="outgoing", disposition="ANSWERED",
                lastapp="Dial", start_u="106.0", answer_u="107.0", end_u="115.0", sequence="3"),
    ])
    assert out is not None and out.call_type == "outgoing" and out.talk_seconds == 11.0


def test_record_from_cdr_skips_robots_and_garbage() -> None:
    assert record_from_cdr([cdr_row(channel="Local/1@patient-sim-1;1", start_u="1", end_u="2")]) is None
    assert record_from_cdr([cdr_row(start_u="x", end_u="")]) is None
    assert record_from_cdr([]) is None


@pytest.mark.parametrize("cause_first", [True, False])
def test_busy_phone_whatever_the_order_of_cause_and_dialend(cause_first: bool) -> None:
    op, ph = "PJSIP/operator-01", "PJSIP/101-02"
    cause = ev.HangupRequest(100.3, "1.1", "1.0", ph, False, 17)
    dialend = ev.DialEnd(100.3, "1.0", "1.0", op, "1.1", ph, "NOANSWER")
    out = run(CallTracker(), [
        chan("1.0", op, "1.0", 100.0),
        ev.QueueJoin(100.1, "1.0", "1.0", op, "q", 1),
        chan("1.1", ph, "1.0", 100.2, "101"),
        ev.DialBegin(100.2, "1.0", "1.0", op, "1.1", ph, "101"),
        *([cause, dialend] if cause_first else [dialend, cause]),
        ev.Hangup(100.4, "1.1", "1.0", ph, 17, "User busy"),
        ev.HangupRequest(103.0, "1.0", "1.0", op, False, 16),
        ev.Hangup(103.0, "1.0", "1.0", op, 16, ""),
    ])
    [r] = finished(out)
    assert [(leg.endpoint, leg.outcome, leg.missed) for leg in r.legs] == [("101", "busy", False)]


def test_record_from_cdr_outgoing_keeps_the_line_it_left_by() -> None:
    """Seed 000: the clinic-number filter counts an outgoing call on the line it leaves by."""
    r = record_from_cdr([cdr_row(channel="PJSIP/101-1", dstchannel="PJSIP/operator-2", disposition="ANSWERED",
                                 clinic_dir="outgoing", clinic_did="74951110001", clinic_callee="79031112233",
                                 start_u="100.0", answer_u="104.0", end_u="110.0", sequence="1")])
    assert r is not None and (r.direction, r.call_type, r.did, r.callee) == (
        "outgoing", "outgoing", "74951110001", "79031112233")
    assert r.talk_seconds == 6.0


def test_connected_seconds_counts_only_who_was_on_the_line() -> None:
    from crm.rules.call_records import connected_seconds

    assert connected_seconds([(102, 104), (105, 111)], 102, 111) == 8.0  # the ring between is not talk
    assert connected_seconds([(102, 110), (105, 111)], 102, 111) == 9.0  # overlapping parties count once
    assert connected_seconds([(102, 120)], 102, 111) == 9.0  # clipped to the patient's hang-up
    assert connected_seconds([(100, 104)], 102, 111) == 2.0  # and to the answer
    assert connected_seconds([(102, 104), (112, 115)], 102, 111) == 2.0  # after the patient left: nothing
    assert connected_seconds([], 102, 111) == 0.0

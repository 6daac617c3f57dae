"""The call tracker: a sans-I/O state machine from normalised AMI events to call records.

``feed(event) -> [Change]``. Events are grouped into conversations by Linkedid; when channels of
two conversations meet in one bridge (pickup, transfer), the conversations merge. A
conversation ends when its last channel hangs up, and yields one frozen ``CallRecord``.
Every leg (a desk phone rung for the call) moves through an explicit transition table; an
event that would break it is reported as an ``Anomaly`` and ignored, never applied half-way.
No asyncio, no sockets, no clock: time comes on the events.
"""

from __future__ import annotations

from collections import OrderedDict

from crm.rules.call_records import (
    ANSWERED,
    ANSWERED_ELSEWHERE,
    BUSY,
    FAILED,
    NO_ANSWER,
    Anomaly,
    Change,
    LiveUpdate,
    QueueWaiting,
    TrackerConfig,
)
from pbx.calls import conversation as cv
from pbx.calls import events as ev
from pbx.calls import q850
from pbx.calls.conversation import (  # endpoint_of: re-exported for the CDR side and tests
    DIALING,
    DONE,
    LEG_TRANSITIONS,
    RINGING,
    TALKING,
    Channel,
    Conversation,
    Leg,
    endpoint_of,
)
from pbx.calls.ending import Endings
from pbx.calls.projection import card_status, live_call

STICKY_VARS = frozenset({"CLINIC_DIRECTION"})
DIAL_STATUS = {
    "ANSWER": ANSWERED,
    "NOANSWER": NO_ANSWER,
    "BUSY": BUSY,
    "CHANUNAVAIL": FAILED,
    "CONGESTION": FAILED,
    "INVALIDARGS": FAILED,
}


class CallTracker(Endings):
    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.conversations: dict[str, Conversation] = {}
        self.by_channel: dict[str, Conversation] = {}
        self.bridges: dict[str, set[str]] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self.anomalies = 0

    # ---- public API -------------------------------------------------------------------
    def feed(self, event: ev.Event) -> list[Change]:
        out: list[Change] = []
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return out
        if isinstance(event, ev.NewChannel):
            self._on_new_channel(event, out)
            return out
        conv = self.by_channel.get(event.uniqueid)
        if conv is None:
            conv = self.conversations.get(event.linkedid)
            if conv is None:
                if event.linkedid not in self._finished:
                    self._anomaly(out, f"{type(event).__name__} for unknown channel {event.channel}",
                                  event.linkedid)
                return out
            # a channel we did not see created (e.g. the dest side of a DialBegin)
            self._attach(conv, event.uniqueid, event.channel, event.at)
        handler(self, conv, event, out)
        return out

    def link_down(self, at: float | None = None) -> None:
        """AMI is gone: what happens now is invisible; every open call becomes incomplete (and
        remembers when we lost sight of it: if Asterisk itself died, that is when it ended)."""
        for conv in self.conversations.values():
            conv.recovered = True
            if conv.lost_at is None:
                conv.lost_at = at

    def resync(self, snapshots: list[ev.ChannelSnapshot], at: float) -> list[Change]:
        """After a reconnect: end what ended while we were away, adopt what is new."""
        out: list[Change] = []
        alive = {s.uniqueid for s in snapshots}
        for bridge, members in list(self.bridges.items()):  # BridgeLeaves we never saw
            members &= alive
            if not members:
                del self.bridges[bridge]
        for conv in list(self.conversations.values()):
            for uid in list(conv.live):
                if uid not in alive:  # it ended while we were away: by the time we lost sight at the latest
                    self._channel_gone(conv, uid, min(at, conv.lost_at or at), out)
            if not conv.live:
                self._finish(conv, out, vanished=True)
        for snap in snapshots:
            if snap.uniqueid in self.by_channel:
                continue
            conv = self.conversations.get(snap.linkedid)
            if conv is None:
                conv = Conversation(snap.linkedid, at - snap.seconds, snap.uniqueid,
                                    linkedids=[snap.linkedid], recovered=True)
                self.conversations[snap.linkedid] = conv
            chan = self._attach(conv, snap.uniqueid, snap.channel, at - snap.seconds)
            chan.caller_num, chan.caller_name, chan.state = snap.caller_num, snap.caller_name, snap.state
            chan.exten = snap.exten
            if snap.uniqueid == snap.linkedid:
                conv.origin = snap.uniqueid
            if snap.state == "Up":
                chan.up_at = at
        for snap in snapshots:
            conv = self.by_channel[snap.uniqueid]
            if conv.recovered and snap.uniqueid != conv.origin and self._is_desk(snap.channel):
                leg = conv.legs.setdefault(
                    snap.uniqueid, Leg(snap.uniqueid, endpoint_of(snap.channel), at - snap.seconds)
                )
                if snap.state == "Up" and leg.state in (DIALING, RINGING):
                    leg.state, leg.answered_at = TALKING, at
                    conv.answered_at = conv.answered_at or at
                    conv.answered_leg = conv.answered_leg or snap.uniqueid
                    conv.talking_leg = conv.talking_leg or snap.uniqueid
                elif snap.state == "Ringing" and leg.state == DIALING:
                    leg.state = RINGING
                self._live(conv, leg.endpoint, at, out)
        return out

    @property
    def active(self) -> int:
        return len(self.conversations)

    # ---- helpers ----------------------------------------------------------------------
    def _anomaly(self, out: list[Change], message: str, linkedid: str = "") -> None:
        self.anomalies += 1
        out.append(Anomaly(message, linkedid))

    def _is_trunk(self, channel: str) -> bool:
        return endpoint_of(channel) in self.config.trunks

    def _is_desk(self, channel: str) -> bool:
        return channel.startswith("PJSIP/") and not self._is_trunk(channel)

    def _attach(self, conv: Conversation, uid: str, name: str, at: float) -> Channel:
        chan = conv.channels.get(uid)
        if chan is None:
            chan = Channel(uid, name, endpoint_of(name), at)
            conv.channels[uid] = chan
        conv.live.add(uid)
        self.by_channel[uid] = conv
        return chan

    def _direction(self, conv: Conversation) -> str:
        return cv.direction(conv, self.config.trunks)

    def _live(self, conv: Conversation, endpoint: str, at: float, out: list[Change],
              status: str = "", outcome: str = "") -> None:
        """Publish the card of ``endpoint`` for this conversation (once per status)."""
        status = status or card_status(conv, endpoint, self.config.trunks)
        if conv.shown.get(endpoint) == status + outcome:
            return  # the card already shows this
        conv.shown[endpoint] = status + outcome
        out.append(LiveUpdate(live_call(conv, endpoint, status, at, outcome, self.config.trunks)))

    def _desk_endpoints(self, conv: Conversation) -> list[str]:
        return cv.desk_endpoints(conv, self.config.trunks)

    def _leg_to(self, conv: Conversation, leg: Leg, state: str, at: float, out: list[Change],
                outcome: str = "") -> bool:
        if state == leg.state:
            return False
        if state not in LEG_TRANSITIONS[leg.state]:
            if leg.state != DONE:  # duplicates after the end (a second CANCEL) are normal
                self._anomaly(out, f"leg {leg.endpoint}: {leg.state} -> {state}", conv.linkedid)
            return False
        leg.state = state
        if state == TALKING:
            leg.answered_at = at
            leg.outcome = ANSWERED
        elif state == DONE:
            leg.ended_at = at
            if not leg.outcome:
                leg.outcome = outcome or NO_ANSWER
        return True

    # ---- event handlers ---------------------------------------------------------------
    def _on_new_channel(self, e: ev.NewChannel, out: list[Change]) -> None:
        conv = self.conversations.get(e.linkedid)
        if conv is None:
            if e.linkedid in self._finished:
                self._anomaly(out, f"new channel {e.channel} in finished call", e.linkedid)
                return
            conv = Conversation(e.linkedid, e.at, e.uniqueid, linkedids=[e.linkedid])
            self.conversations[e.linkedid] = conv
        chan = self._attach(conv, e.uniqueid, e.channel, e.at)
        chan.caller_num, chan.caller_name, chan.exten = e.caller_num, e.caller_name, e.exten

    def _on_var(self, conv: Conversation, e: ev.ChannelVar, out: list[Change]) -> None:
        # Inherited variables are set again on every leg; the origin's value is the truth.
        # Except the direction, declared once: a caller transferred to a colleague's phone
        # runs the desk phones' dialplan, which would declare the call internal.
        if e.name in STICKY_VARS and e.name in conv.vars:
            return
        if e.uniqueid == conv.origin or e.name not in conv.vars:
            conv.vars[e.name] = e.value

    def _on_state(self, conv: Conversation, e: ev.StateChange, out: list[Change]) -> None:
        chan = conv.channels[e.uniqueid]
        chan.state = e.state
        leg = conv.legs.get(e.uniqueid)
        if e.state == "Ringing" and leg is not None:
            if self._leg_to(conv, leg, RINGING, e.at, out) and leg.endpoint not in self.config.trunks:
                self._live(conv, leg.endpoint, e.at, out)
        elif e.state == "Up":
            chan.up_at = chan.up_at or e.at
            if e.uniqueid == conv.origin and self._is_desk(chan.name) and not conv.legs:
                self._live(conv, chan.endpoint, e.at, out)  # click-to-call: the employee picked up

    def _on_callerid(self, conv: Conversation, e: ev.CallerIdChange, out: list[Change]) -> None:
        chan = conv.channels[e.uniqueid]
        chan.caller_num = e.caller_num or chan.caller_num
        chan.caller_name = e.caller_name or chan.caller_name

    def _on_queue_join(self, conv: Conversation, e: ev.QueueJoin, out: list[Change]) -> None:
        conv.queue = e.queue
        out.append(QueueWaiting(e.queue, e.count, e.at))

    def _on_queue_leave(self, conv: Conversation, e: ev.QueueLeave, out: list[Change]) -> None:
        out.append(QueueWaiting(e.queue, e.count, e.at))

    def _on_queue_abandon(self, conv: Conversation, e: ev.QueueAbandon, out: list[Change]) -> None:
        conv.vars.setdefault("CLINIC_ABANDONED", "1")

    def _on_dial_begin(self, conv: Conversation, e: ev.DialBegin, out: list[Change]) -> None:
        if e.dest_uniqueid in conv.legs:
            self._anomaly(out, f"second DialBegin for {e.dest_channel}", conv.linkedid)
            return
        leg = Leg(e.dest_uniqueid, endpoint_of(e.dest_channel), e.at, e.dial_string)
        conv.legs[e.dest_uniqueid] = leg
        if conv.answered_at is not None:
            # a phone dialled after the answer: a transfer. Who hung up before it did not end
            # the call, and the colleague who passed it on is no longer in the talk.
            conv.hangup_by, conv.talking_leg = "", ""
        self._attach(conv, e.dest_uniqueid, e.dest_channel, e.at)
        if leg.endpoint in self.config.trunks:
            origin = conv.channels.get(conv.origin)
            if origin is not None and self._is_desk(origin.name):
                self._live(conv, origin.endpoint, e.at, out)
        else:
            self._live(conv, leg.endpoint, e.at, out)

    def _on_dial_state(self, conv: Conversation, e: ev.DialState, out: list[Change]) -> None:
        leg = conv.legs.get(e.dest_uniqueid)
        if leg is not None and e.status == "RINGING" and leg.state == DIALING:
            self._leg_to(conv, leg, RINGING, e.at, out)

    def _on_dial_end(self, conv: Conversation, e: ev.DialEnd, out: list[Change]) -> None:
        leg = conv.legs.get(e.dest_uniqueid)
        if leg is None:
            self._anomaly(out, f"DialEnd without DialBegin for {e.dest_channel}", conv.linkedid)
            return
        if e.status == "ANSWER":
            if self._leg_to(conv, leg, TALKING, e.at, out):
                if conv.answered_at is None:
                    conv.answered_at, conv.answered_leg = e.at, leg.uniqueid
                conv.talking_leg = leg.uniqueid
                self._live_for_answer(conv, leg, e.at, out)
            return
        if e.status == "CANCEL":
            # a colleague answered while it rang (not before it: a transfer nobody took)
            other = any(lg.answered_at is not None and lg.answered_at >= leg.started_at
                        for lg in conv.legs.values() if lg is not leg)
            outcome = ANSWERED_ELSEWHERE if other else NO_ANSWER
        else:
            outcome = DIAL_STATUS.get(e.status, "")
            if not outcome:
                self._anomaly(out, f"unknown DialStatus {e.status!r}", conv.linkedid)
                outcome = FAILED
            elif outcome == NO_ANSWER and q850.meaning(leg.cause) == q850.BUSY:
                outcome = BUSY  # app_queue reports a 486 Busy Here as NOANSWER
        if leg.state == TALKING:
            return  # the talk goes on; its end comes with the hang-up
        if self._leg_to(conv, leg, DONE, e.at, out, outcome) and leg.endpoint not in self.config.trunks:
            self._live(conv, leg.endpoint, e.at, out, "ended", leg.outcome)

    def _live_for_answer(self, conv: Conversation, leg: Leg, at: float, out: list[Change]) -> None:
        if leg.endpoint in self.config.trunks:
            origin = conv.channels.get(conv.origin)
            if origin is not None and self._is_desk(origin.name):
                self._live(conv, origin.endpoint, at, out)
        else:
            self._live(conv, leg.endpoint, at, out)

    def _on_ring_no_answer(self, conv: Conversation, e: ev.AgentRingNoAnswer, out: list[Change]) -> None:
        leg = conv.legs.get(e.dest_uniqueid)
        if leg is not None and leg.state in (DIALING, RINGING):
            if self._leg_to(conv, leg, DONE, e.at, out, NO_ANSWER):
                self._live(conv, leg.endpoint, e.at, out, "ended", NO_ANSWER)

    def _on_bridge_enter(self, conv: Conversation, e: ev.BridgeEnter, out: list[Change]) -> None:
        members = self.bridges.setdefault(e.bridge, set())
        for uid in members:
            other = self.by_channel.get(uid)
            if other is not None and other is not conv:
                conv = self._merge(other, conv)
        members.add(e.uniqueid)
        if conv.answered_at is None and conv.origin in members:
            # answered without a DialEnd (a pickup, a bridge made by ARI), whichever of the two
            # entered the bridge first (a picker's channel enters before the caller's)
            picker = next((uid for uid in sorted(members) if uid != conv.origin), None)
            if picker is not None:
                self._picked_up(conv, picker, e.at, out)

    def _picked_up(self, conv: Conversation, uid: str, at: float, out: list[Change]) -> None:
        """A desk phone took the call from its colleagues' ringing (the pickup key): it is the
        call's answering leg, and the phones that rang until its pickup began were answered
        elsewhere, as with ring-all."""
        conv.answered_at = at
        conv.answered_leg = conv.talking_leg = uid
        chan = conv.channels.get(uid)
        if chan is None or not self._is_desk(chan.name):
            return
        leg = conv.legs.setdefault(uid, Leg(uid, chan.endpoint, chan.created_at))
        if self._leg_to(conv, leg, TALKING, at, out):
            self._live_for_answer(conv, leg, at, out)
        for other in conv.legs.values():
            if other is not leg and other.outcome == NO_ANSWER and (other.ended_at or at) >= chan.created_at:
                other.outcome = ANSWERED_ELSEWHERE

    def _on_bridge_leave(self, conv: Conversation, e: ev.BridgeLeave, out: list[Change]) -> None:
        members = self.bridges.get(e.bridge)
        if members is not None:
            members.discard(e.uniqueid)
            if not members:
                del self.bridges[e.bridge]

    def _merge(self, keep: Conversation, gone: Conversation) -> Conversation:
        """Two conversations meet in a bridge: the earlier one absorbs the later."""
        if gone.started_at < keep.started_at:
            keep, gone = gone, keep
        keep.linkedids.extend(x for x in gone.linkedids if x not in keep.linkedids)
        keep.channels.update(gone.channels)
        keep.legs.update(gone.legs)
        keep.live |= gone.live
        keep.handed_over |= gone.handed_over
        for k, v in gone.vars.items():
            keep.vars.setdefault(k, v)
        keep.recovered = keep.recovered or gone.recovered
        for uid in gone.channels:
            self.by_channel[uid] = keep
        del self.conversations[gone.linkedid]
        return keep

    def _on_hold(self, conv: Conversation, e: ev.Hold, out: list[Change]) -> None:
        conv.on_hold = e.on
        for endpoint in self._desk_endpoints(conv):
            self._live(conv, endpoint, e.at, out)


_HANDLERS = {
    ev.NewChannel: CallTracker._on_new_channel,
    ev.ChannelVar: CallTracker._on_var,
    ev.StateChange: CallTracker._on_state,
    ev.CallerIdChange: CallTracker._on_callerid,
    ev.QueueJoin: CallTracker._on_queue_join,
    ev.QueueLeave: CallTracker._on_queue_leave,
    ev.QueueAbandon: CallTracker._on_queue_abandon,
    ev.DialBegin: CallTracker._on_dial_begin,
    ev.DialState: CallTracker._on_dial_state,
    ev.DialEnd: CallTracker._on_dial_end,
    ev.AgentRingNoAnswer: CallTracker._on_ring_no_answer,
    ev.BridgeEnter: CallTracker._on_bridge_enter,
    ev.BridgeLeave: CallTracker._on_bridge_leave,
    ev.Hold: CallTracker._on_hold,
    ev.Transferred: CallTracker._on_transferred,
    ev.HangupRequest: CallTracker._on_hangup_request,
    ev.Hangup: CallTracker._on_hangup,
}

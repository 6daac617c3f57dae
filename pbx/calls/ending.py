"""How a conversation ends, for the call tracker (``pbx.calls.tracker.CallTracker`` is built on
this): who hung up, a channel gone and its leg's outcome, and the conversation's last channel
turning it into one ``CallRecord`` (or, for a call seen only in part, a backfill from the CDR).
Pure like the tracker: no I/O, no clock."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from crm.rules.call_records import (
    ANSWERED,
    ANSWERED_ELSEWHERE,
    BUSY,
    HANGUP_CALLEE,
    HANGUP_CALLER,
    HANGUP_SYSTEM,
    INCOMING,
    INTERNAL,
    LINK_LOST,
    NO_ANSWER,
    OUTGOING,
    CallFinished,
    Change,
    NeedsBackfill,
    TrackerConfig,
)
from pbx.calls import conversation as cv
from pbx.calls import events as ev
from pbx.calls import q850
from pbx.calls.conversation import DIALING, DONE, TALKING, Conversation, Leg
from pbx.calls.projection import record_of


class Endings:
    config: TrackerConfig
    conversations: dict[str, Conversation]
    by_channel: dict[str, Conversation]
    _finished: OrderedDict[str, None]

    # provided by the tracker
    def _leg_to(self, conv: Conversation, leg: Leg, state: str, at: float, out: list[Change],
                outcome: str = "") -> bool:
        raise NotImplementedError

    def _live(self, conv: Conversation, endpoint: str, at: float, out: list[Change],
              status: str = "", outcome: str = "") -> None:
        raise NotImplementedError

    def _desk_endpoints(self, conv: Conversation) -> list[str]:
        raise NotImplementedError

    def _on_hangup_request(self, conv: Conversation, e: ev.HangupRequest, out: list[Change]) -> None:
        if e.soft:  # its cause is a reason flag, not Q.850: only Asterisk stopping matters
            if q850.ended_by_asterisk(e.cause) and not conv.hangup_by:
                conv.hangup_by = HANGUP_SYSTEM
            return
        leg = conv.legs.get(e.uniqueid)
        if leg is not None and e.cause:
            leg.cause = e.cause
            self._refine_busy(leg)
        if conv.hangup_by or e.uniqueid in conv.handed_over:
            return
        # before the answer only the caller can end the call; a phone that refuses (busy)
        # ends just its own leg
        if e.uniqueid == conv.origin or (conv.answered_at is not None and self._in_talk(conv, e.uniqueid)):
            conv.hangup_by = self._side(conv, e.uniqueid)

    def _in_talk(self, conv: Conversation, uid: str) -> bool:
        """The clinic party talking with the patient now, or the patient of an outgoing call
        (its answered trunk): whose hang-up ends the talk."""
        if uid == conv.talking_leg:
            return True
        leg = conv.legs.get(uid)
        return uid == conv.answered_leg and leg is not None and leg.endpoint in self.config.trunks

    def _side(self, conv: Conversation, uid: str) -> str:
        if uid == conv.origin:
            return HANGUP_CALLER
        leg = conv.legs.get(uid)
        if leg is not None and leg.endpoint not in self.config.trunks and cv.direction(
                conv, self.config.trunks) == OUTGOING:
            return HANGUP_CALLER  # a colleague the patient was transferred to: the clinic's side
        if uid == conv.talking_leg or leg is not None:
            return HANGUP_CALLEE
        return HANGUP_SYSTEM

    def _on_transferred(self, conv: Conversation, e: ev.Transferred, out: list[Change]) -> None:
        # The transferer's hang-up may reach us after the colleague's phone began to ring
        # (Asterisk's threads race): it must not count as the end of the talk.
        conv.handed_over.update((e.uniqueid, *e.others))

    def _on_hangup(self, conv: Conversation, e: ev.Hangup, out: list[Change]) -> None:
        if conv.answered_at is not None and not conv.hangup_by and e.uniqueid not in conv.handed_over and (
            e.uniqueid == conv.origin or self._in_talk(conv, e.uniqueid)
        ):
            conv.hangup_by = self._side(conv, e.uniqueid)
        self._channel_gone(conv, e.uniqueid, e.at, out, e.cause)
        if not conv.live:
            self._finish(conv, out)

    def _channel_gone(self, conv: Conversation, uid: str, at: float, out: list[Change],
                      cause: int = 0) -> None:
        chan = conv.channels.get(uid)
        if chan is not None:
            chan.ended_at = at
        conv.live.discard(uid)
        leg = conv.legs.get(uid)
        if leg is not None and cause:
            leg.cause = leg.cause or cause
            self._refine_busy(leg)
        if leg is None or leg.state == DONE:
            return
        if leg.state == TALKING:
            self._leg_to(conv, leg, DONE, at, out)
            return
        outcome = q850.leg_outcome(cause or leg.cause, rang=leg.state != DIALING)
        self._leg_to(conv, leg, DONE, at, out, outcome)

    @staticmethod
    def _refine_busy(leg: Leg) -> None:
        """app_queue reports a 486 Busy Here as NOANSWER, and the phone's hang-up cause 17 may
        arrive before or after that DialEnd: whichever comes last makes the leg "busy"."""
        if leg.state == DONE and leg.outcome == NO_ANSWER and q850.meaning(leg.cause) == q850.BUSY:
            leg.outcome = BUSY

    # ---- the end of a conversation --------------------------------------------------
    def _finish(self, conv: Conversation, out: list[Change], vanished: bool = False) -> None:
        for lid in conv.linkedids:
            self.conversations.pop(lid, None)
            self._finished[lid] = None
        self.conversations.pop(conv.linkedid, None)
        for uid in conv.channels:
            if self.by_channel.get(uid) is conv:
                del self.by_channel[uid]
        while len(self._finished) > self.config.finished_memory:
            self._finished.popitem(last=False)
        ended = max((c.ended_at or c.created_at for c in conv.channels.values()), default=conv.started_at)
        if conv.recovered:
            for endpoint in self._desk_endpoints(conv):
                talked = any(lg.answered_at is not None for lg in conv.legs.values()
                             if lg.endpoint == endpoint)
                self._live(conv, endpoint, ended, out, "ended", "completed" if talked else "missed")
            # the CDR has it, unless Asterisk died with it (it writes no row then): what we saw
            # until we lost sight of it stands in, marked, and the CDR's row wins if it exists
            fallback = None
            if vanished and conv.lost_at is not None:
                seen = record_of(conv, ended, self.config.trunks)
                fallback = replace(seen, hangup_by=HANGUP_SYSTEM, source=LINK_LOST)
            out.append(NeedsBackfill(conv.linkedid, ended, fallback))
            return
        record = record_of(conv, ended, self.config.trunks)
        if record.direction == INTERNAL and not self._desk_endpoints(conv):
            return  # no desk phone, no trunk: a robot's or a test's channel, not a clinic call
        for endpoint in self._desk_endpoints(conv):
            leg = next((lg for lg in conv.legs.values() if lg.endpoint == endpoint), None)
            if leg is not None and leg.outcome == ANSWERED_ELSEWHERE:
                continue  # that card went away when the colleague answered
            if record.direction == INCOMING:
                outcome = "completed" if leg is not None and leg.outcome == ANSWERED else "missed"
            else:
                outcome = "completed" if record.answered else "unanswered"
            self._live(conv, endpoint, ended, out, "ended", outcome)
        out.append(CallFinished(record))

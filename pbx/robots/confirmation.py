"""The confirmation robot's whole call as one pure flow (seed 002): place the call (optionally
through answering-machine detection), classify a call that was never answered by its Q.850
cause, then run the IVR (``pbx.robots.ivr``) on the answered channel.

Outcomes: confirmed | reschedule | cancelled | no_key | hangup (from the IVR), machine,
busy | no_answer | failed (never answered, ``q850.robot_outcome``), not_started (Asterisk
refused the call: the patient was never dialled), failed (a call that ran too long, or whose
events never came).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pbx.calls import q850
from pbx.robots import flow as f
from pbx.robots import ivr

MAX_CALL = "max_call"
NO_INPUT = "no_input"


@dataclass
class ConfirmationFlow:
    channel: str
    endpoint: str
    media: dict[str, str]  # IVR prompt name (main, invalid, ...) -> ``sound:...``
    ring_seconds: int
    caller_id: str = ""
    amd: bool = False
    max_errors: int = 3
    input_timeout: float = 7.0
    max_call_seconds: float = 300.0
    answered_at: float | None = None
    done: bool = False
    _ivr: ivr.ConfirmationIvr = field(init=False)

    def __post_init__(self) -> None:
        self._ivr = ivr.ConfirmationIvr(max_errors=self.max_errors, input_timeout=self.input_timeout)

    def start(self) -> list[f.Command]:
        return [f.StartTimer(MAX_CALL, self.max_call_seconds),
                f.Originate(self.channel, self.endpoint, self.ring_seconds, self.caller_id, self.amd)]

    def feed(self, fact: f.Fact) -> list[f.Command]:
        if self.done:
            return []
        if isinstance(fact, f.OriginateFailed):
            return self._end(f.Outcome("failed" if fact.placed else "not_started", reason=fact.reason[:200]))
        if isinstance(fact, f.TimerDue) and fact.name == MAX_CALL:
            return [f.Hangup(self.channel), *self._end(f.Outcome(
                "failed", self._ivr.keys, self.answered_at, f"звонок дольше {self.max_call_seconds:.0f} с"))]
        if isinstance(fact, f.Answered):
            if self.answered_at is not None:
                return []
            self.answered_at = fact.at
            if fact.machine:
                return [f.Hangup(self.channel), *self._end(f.Outcome("machine", "", fact.at))]
            return self._run(ivr.Answered(fact.at))
        if isinstance(fact, f.Vanished):  # ended while the link to Asterisk was down
            if self.answered_at is None:
                return self._end(f.Outcome("failed", reason="связь с Asterisk прерывалась"))
            fact = f.HungUp(fact.channel, 0, fact.at)  # as the patient hanging up (a choice made stays)
        if isinstance(fact, f.HungUp):
            if self.answered_at is None:  # the cause is known once the channel is destroyed
                return self._end(f.Outcome(q850.robot_outcome(fact.cause))) if fact.final else []
            return self._run(ivr.HungUp(fact.at))
        if isinstance(fact, f.Key):
            return self._run(ivr.Key(fact.digit, fact.at))
        if isinstance(fact, f.PromptDone):
            seq = fact.playback.rsplit("-", 1)[-1]
            return self._run(ivr.PromptDone(int(seq) if seq.isdigit() else -1, fact.at))
        if isinstance(fact, f.TimerDue) and fact.name == NO_INPUT:
            return self._run(ivr.NoInput(fact.at))
        return []

    def _end(self, outcome: f.Outcome) -> list[f.Command]:
        self.done = True
        return [f.CancelTimer(MAX_CALL), f.CancelTimer(NO_INPUT), outcome]

    def _run(self, event: ivr.Event) -> list[f.Command]:
        """The IVR's commands in the flow's words."""
        out: list[f.Command] = []
        for cmd in self._ivr.feed(event):
            if isinstance(cmd, ivr.Play):
                out.append(f.Play(self.channel, f"{self.channel}-pb-{cmd.seq}", self.media[cmd.prompt]))
            elif isinstance(cmd, ivr.StopPlayback):
                out.append(f.StopPlayback(f"{self.channel}-pb-{self._ivr.seq - 1}"))
            elif isinstance(cmd, ivr.StartTimer):
                out.append(f.StartTimer(NO_INPUT, cmd.seconds))
            elif isinstance(cmd, ivr.CancelTimer):
                out.append(f.CancelTimer(NO_INPUT))
            elif isinstance(cmd, ivr.Decided):
                out.append(f.Report(cmd.outcome))
            elif isinstance(cmd, ivr.Hangup):
                out.append(f.Hangup(self.channel))
            elif isinstance(cmd, ivr.Finished):
                out += self._end(f.Outcome(cmd.outcome, cmd.keys, self.answered_at))
        return out

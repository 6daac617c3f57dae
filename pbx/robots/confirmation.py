"""The confirmation robot's whole call as one pure flow (seed 002): place the call (optionally
through answering-machine detection), classify a call that was never answered by its Q.850
cause, then run the IVR (``pbx.robots.ivr``) on the answered channel.

Outcomes: confirmed | reschedule | cancelled | no_key | hangup (from the IVR), machine,
busy | no_answer | failed (never answered, ``q850.robot_outcome``), not_started (Asterisk
refused the call: the patient was never dialled), failed (a call that ran too long, or whose
events never came).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pbx.calls import q850
from pbx.robots import flow as f
from pbx.robots import ivr

MAX_CALL = "max_call"
NO_INPUT = ivr.NO_INPUT


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
        self._ivr = ivr.ConfirmationIvr(self.channel, self.media, max_errors=self.max_errors,
                                        input_timeout=self.input_timeout)

    def start(self) -> list[f.Command]:
        return [f.StartTimer(MAX_CALL, self.max_call_seconds),
                f.Originate(self.channel, self.endpoint, self.ring_seconds, self.caller_id, self.amd)]

    def feed(self, fact: f.Fact) -> list[f.Command]:
        if self.done:
            return []
        step = _STEPS.get(type(fact))
        return step(self, fact) if step is not None else self._run(fact)

    # --- steps (the IVR's own facts go to it as they are) ------------------------------------
    def _originate_failed(self, fact: f.OriginateFailed) -> list[f.Command]:
        return self._end(f.Outcome("failed" if fact.placed else "not_started", reason=fact.reason[:200]))

    def _timer(self, fact: f.TimerDue) -> list[f.Command]:
        if fact.name != MAX_CALL:
            return self._run(fact)
        return [f.Hangup(self.channel), *self._end(f.Outcome(
            "failed", self._ivr.keys, self.answered_at, f"звонок дольше {self.max_call_seconds:.0f} с"))]

    def _answered(self, fact: f.Answered) -> list[f.Command]:
        if self.answered_at is not None:
            return []
        self.answered_at = fact.at
        if fact.machine:
            return [f.Hangup(self.channel), *self._end(f.Outcome("machine", "", fact.at))]
        return self._run(fact)

    def _vanished(self, fact: f.Vanished) -> list[f.Command]:  # ended while the link to Asterisk was down
        if self.answered_at is None:
            return self._end(f.Outcome("failed", reason="связь с Asterisk прерывалась"))
        return self._run(f.HungUp(fact.channel, 0, fact.at))  # as the patient hanging up (a choice made stays)

    def _hung_up(self, fact: f.HungUp) -> list[f.Command]:
        if self.answered_at is None:  # the cause is known once the channel is destroyed
            return self._end(f.Outcome(q850.robot_outcome(fact.cause))) if fact.final else []
        return self._run(fact)

    def _end(self, outcome: f.Outcome) -> list[f.Command]:
        self.done = True
        return [f.CancelTimer(MAX_CALL), f.CancelTimer(NO_INPUT), outcome]

    def _run(self, fact: f.Fact) -> list[f.Command]:
        """The IVR's commands; its outcome ends the flow."""
        out = self._ivr.feed(fact)
        if out and isinstance(out[-1], f.Outcome):
            return [*out[:-1], *self._end(out[-1])]
        return out


_STEPS: dict[type, Callable[[ConfirmationFlow, Any], list[f.Command]]] = {
    f.OriginateFailed: ConfirmationFlow._originate_failed,
    f.TimerDue: ConfirmationFlow._timer,
    f.Answered: ConfirmationFlow._answered,
    f.Vanished: ConfirmationFlow._vanished,
    f.HungUp: ConfirmationFlow._hung_up,
}

"""The confirmation robot's IVR as a pure state machine: events in (answer, prompt finished,
key, no-input timer, hang-up), commands out (play, stop, timer, hang up, decided, finished).

No I/O and no clock: the ARI adapter plays prompts, runs the timer and feeds events back.
Each Play carries a sequence number; a PromptDone for an older playback (one we stopped on a
key press) is ignored, so barge-in cannot confuse the flow.

Keys (seed 002): 1 confirms, 2 asks to reschedule, 3 cancels, 0 repeats. Any other key or
silence gets a retry prompt and the main prompt again, up to ``max_errors``; then the robot
says goodbye and the outcome is ``no_key``. The choice is reported (``Decided``) the moment
the key arrives, so the schedule changes at once even if the patient hangs up during the
closing phrase.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONFIRMED, RESCHEDULE, CANCELLED, NO_KEY, HANGUP = "confirmed", "reschedule", "cancelled", "no_key", "hangup"
CHOICES = {"1": CONFIRMED, "2": RESCHEDULE, "3": CANCELLED}
CLOSING = {CONFIRMED: "confirmed", RESCHEDULE: "reschedule", CANCELLED: "cancelled", NO_KEY: "goodbye"}
REPEAT = "0"


# --- events in ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Answered:
    at: float


@dataclass(frozen=True)
class PromptDone:
    seq: int
    at: float


@dataclass(frozen=True)
class Key:
    digit: str
    at: float


@dataclass(frozen=True)
class NoInput:
    at: float


@dataclass(frozen=True)
class HungUp:
    at: float


Event = Answered | PromptDone | Key | NoInput | HungUp


# --- commands out --------------------------------------------------------------------------
@dataclass(frozen=True)
class Play:
    prompt: str  # main | invalid | no_input | confirmed | reschedule | cancelled | goodbye
    seq: int


@dataclass(frozen=True)
class StopPlayback:
    pass


@dataclass(frozen=True)
class StartTimer:
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    pass


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Decided:
    outcome: str  # confirmed | reschedule | cancelled


@dataclass(frozen=True)
class Finished:
    outcome: str  # confirmed | reschedule | cancelled | no_key | hangup
    keys: str
    at: float


Command = Play | StopPlayback | StartTimer | CancelTimer | Hangup | Decided | Finished


@dataclass
class ConfirmationIvr:
    max_errors: int = 3  # invalid keys and silences together
    max_repeats: int = 3  # "0" presses honoured; further ones count as errors
    input_timeout: float = 7.0
    state: str = "new"  # new | speaking | waiting | closing | done
    playing: str = ""
    seq: int = 0
    errors: int = 0
    repeats: int = 0
    keys: str = ""
    outcome: str = ""
    log: list[str] = field(default_factory=list)  # anomalies, for the adapter's log

    def feed(self, event: Event) -> list[Command]:
        if self.state == "done":
            return []
        if isinstance(event, HungUp):
            self.state = "done"
            return [CancelTimer(), Finished(self.outcome or HANGUP, self.keys, event.at)]
        if isinstance(event, Answered):
            if self.state != "new":
                self.log.append("answered twice")
                return []
            return self._play("main")
        if isinstance(event, PromptDone):
            return self._prompt_done(event)
        if isinstance(event, Key):
            return self._key(event)
        if isinstance(event, NoInput):
            if self.state != "waiting":
                return []  # a timer that raced with a key
            return self._error("no_input")
        return []

    def _play(self, prompt: str, *, stop: bool = False) -> list[Command]:
        self.seq += 1
        self.playing = prompt
        self.state = "closing" if prompt in CLOSING.values() else "speaking"
        out: list[Command] = [StopPlayback()] if stop else []
        return [*out, CancelTimer(), Play(prompt, self.seq)]

    def _prompt_done(self, event: PromptDone) -> list[Command]:
        if event.seq != self.seq:
            return []  # a playback we stopped
        if self.state == "closing":
            self.state = "done"
            return [Hangup(), Finished(self.outcome, self.keys, event.at)]
        if self.playing in ("invalid", "no_input"):
            return self._play("main")
        self.state = "waiting"
        return [StartTimer(self.input_timeout)]

    def _key(self, event: Key) -> list[Command]:
        if self.state not in ("speaking", "waiting"):
            return []  # before the answer or during the closing phrase
        digit = event.digit[:1]
        self.keys += digit
        speaking = self.state == "speaking"
        if digit in CHOICES:
            self.outcome = CHOICES[digit]
            return [Decided(self.outcome), *self._play(CLOSING[self.outcome], stop=speaking)]
        if digit == REPEAT and self.repeats < self.max_repeats:
            self.repeats += 1
            return self._play("main", stop=speaking)
        return self._error("invalid", stop=speaking)

    def _error(self, prompt: str, *, stop: bool = False) -> list[Command]:
        self.errors += 1
        if self.errors >= self.max_errors:
            self.outcome = NO_KEY
            return self._play(CLOSING[NO_KEY], stop=stop)
        return self._play(prompt, stop=stop)

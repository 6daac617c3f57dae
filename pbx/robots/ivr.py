"""The confirmation robot's IVR as a pure, table-driven state machine in the robots' one
vocabulary (``pbx.robots.flow``): facts in (answered, prompt finished, key, the no-input timer,
hung up), commands out (play, stop, timer, report, hang up, outcome).

No I/O and no clock: the ARI flow runner plays prompts, runs the timer and feeds facts back.
Each playback has its own id; a PromptDone of an older playback (one stopped on a key press) is
ignored, so barge-in cannot confuse the flow.

Keys (seed 002): 1 confirms, 2 asks to reschedule, 3 cancels, 0 repeats. Any other key or
silence gets a retry prompt and the main prompt again, up to ``max_errors``; then the robot
says goodbye and the outcome is ``no_key``. The choice is reported (``Report``) the moment
the key arrives, so the schedule changes at once even if the patient hangs up during the
closing phrase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pbx.robots import flow as f

CONFIRMED, RESCHEDULE, CANCELLED, NO_KEY, HANGUP = "confirmed", "reschedule", "cancelled", "no_key", "hangup"
CHOICES = {"1": CONFIRMED, "2": RESCHEDULE, "3": CANCELLED}
CLOSING = {CONFIRMED: "confirmed", RESCHEDULE: "reschedule", CANCELLED: "cancelled", NO_KEY: "goodbye"}
REPEAT = "0"
NO_INPUT = "no_input"  # the timer's name
PROMPTS = ("main", "invalid", "no_input", *CLOSING.values())
NEW, SPEAKING, WAITING, CLOSING_PHRASE, DONE = "new", "speaking", "waiting", "closing", "done"
ANY = "*"


@dataclass
class ConfirmationIvr:
    channel: str = "robot"
    media: dict[str, str] = field(default_factory=lambda: {p: p for p in PROMPTS})  # prompt -> ``sound:...``
    max_errors: int = 3  # invalid keys and silences together
    max_repeats: int = 3  # "0" presses honoured; further ones count as errors
    input_timeout: float = 7.0
    state: str = NEW
    playing: str = ""
    seq: int = 0
    errors: int = 0
    repeats: int = 0
    keys: str = ""
    outcome: str = ""
    answered_at: float | None = None
    log: list[str] = field(default_factory=list)  # anomalies, for the adapter's log

    def feed(self, fact: f.Fact) -> list[f.Command]:
        if self.state == DONE:
            return []
        kind = fact_kind(fact)
        step = STEPS.get((self.state, kind)) or STEPS.get((ANY, kind))
        if step is None:
            if kind == "answered" and self.state != NEW:
                self.log.append("answered twice")
            return []  # e.g. a timer that raced with a key, a key during the closing phrase
        return step(self, fact)

    @property
    def playback(self) -> str:
        return f"{self.channel}-pb-{self.seq}"

    # --- steps ----------------------------------------------------------------------------
    def _answered(self, fact: f.Fact) -> list[f.Command]:
        self.answered_at = getattr(fact, "at", None)
        return self._play("main")

    def _hung_up(self, _: f.Fact) -> list[f.Command]:
        self.state = DONE
        return [f.Outcome(self.outcome or HANGUP, self.keys, self.answered_at)]

    def _prompt_done(self, fact: f.Fact) -> list[f.Command]:
        if getattr(fact, "playback", "") != self.playback:
            return []  # a playback we stopped
        if self.state == CLOSING_PHRASE:
            self.state = DONE
            return [f.Hangup(self.channel), f.Outcome(self.outcome, self.keys, self.answered_at)]
        if self.playing in ("invalid", "no_input"):
            return self._play("main")
        self.state = WAITING
        return [f.StartTimer(NO_INPUT, self.input_timeout)]

    def _key(self, fact: f.Fact) -> list[f.Command]:
        digit = getattr(fact, "digit", "")[:1]
        self.keys += digit
        speaking = self.state == SPEAKING
        if digit in CHOICES:
            self.outcome = CHOICES[digit]
            return [f.Report(self.outcome), *self._play(CLOSING[self.outcome], stop=speaking)]
        if digit == REPEAT and self.repeats < self.max_repeats:
            self.repeats += 1
            return self._play("main", stop=speaking)
        return self._error("invalid", stop=speaking)

    def _no_input(self, _: f.Fact) -> list[f.Command]:
        return self._error("no_input")

    def _play(self, prompt: str, *, stop: bool = False) -> list[f.Command]:
        out: list[f.Command] = [f.StopPlayback(self.playback)] if stop else []
        self.seq += 1
        self.playing = prompt
        self.state = CLOSING_PHRASE if prompt in CLOSING.values() else SPEAKING
        return [*out, f.CancelTimer(NO_INPUT), f.Play(self.channel, self.playback, self.media[prompt])]

    def _error(self, prompt: str, *, stop: bool = False) -> list[f.Command]:
        self.errors += 1
        if self.errors >= self.max_errors:
            self.outcome = NO_KEY
            return self._play(CLOSING[NO_KEY], stop=stop)
        return self._play(prompt, stop=stop)


def fact_kind(fact: f.Fact) -> str:
    """The IVR's name of a fact (a timer other than its own is none of its business)."""
    if isinstance(fact, f.TimerDue):
        return "no_input" if fact.name == NO_INPUT else ""
    return _KINDS.get(type(fact), "")


_KINDS: dict[type, str] = {f.Answered: "answered", f.PromptDone: "prompt_done", f.Key: "key", f.HungUp: "hung_up"}

# (state, fact) -> step: what a fact does in each state; a pair not listed is ignored
STEPS: dict[tuple[str, str], Callable[[ConfirmationIvr, f.Fact], list[f.Command]]] = {
    (NEW, "answered"): ConfirmationIvr._answered,
    (SPEAKING, "prompt_done"): ConfirmationIvr._prompt_done,
    (WAITING, "prompt_done"): ConfirmationIvr._prompt_done,
    (CLOSING_PHRASE, "prompt_done"): ConfirmationIvr._prompt_done,
    (SPEAKING, "key"): ConfirmationIvr._key,
    (WAITING, "key"): ConfirmationIvr._key,
    (WAITING, "no_input"): ConfirmationIvr._no_input,
    (ANY, "hung_up"): ConfirmationIvr._hung_up,
}

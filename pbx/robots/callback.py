"""The website callback robot's call as one pure flow (seed 003).

1. Ring the clinic side: one desk phone, or every free reception phone at once (the first to
   answer takes it, the others stop ringing).
2. To the administrator: «Заявка на запись с {источник}. Нажмите любую клавишу…» — said again
   after a pause, ``prompt_repeats`` times in all. 9: «пациент уже записан», closed.
3. Any other key: the request's details, «Соединяю с пациентом», then the administrator's
   channel goes on into the dialplan (``clinic-outgoing``) to dial the patient: an ordinary
   outgoing call of that administrator (the clinic's caller ID, recording, CDR, live card).
4. The patient answered and the two talked for more than 10 s (``callback_rules.contacted``):
   contacted; less: ``patient_short``; busy / no answer / unreachable: the patient's side failed.

Outcomes are ``callback_rules``' attempt outcomes. Reports along the way (``answered:<ext>``,
``key``, ``dialling``, ``bridged``) let the service write the attempt's progress as it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crm.rules import callback as cr
from pbx.robots import flow as f

MAX_CALL = "max_call"
KEY_WAIT = "key_wait"
RINGING, PROMPT, DETAILS, CLOSING, DIALLING, TALKING = "ringing", "prompt", "details", "closing", "dialling", "talking"
_DIAL_STATUS = {"BUSY": cr.PATIENT_BUSY, "NOANSWER": cr.PATIENT_NO_ANSWER, "CANCEL": cr.CLINIC_HANGUP}


@dataclass
class CallbackFlow:
    base: str  # channel ids are ``<base>-<extension>``
    desk_phones: tuple[str, ...]
    patient: str  # the number the dialplan dials (digits)
    prompt: str  # ``sound:...`` of «Заявка на запись с …»
    details: tuple[str, ...]  # doctor, service, «Соединяю с пациентом»
    closed: str  # said after 9
    ring_clinic_seconds: int = 25
    ring_patient_seconds: int = 30
    key_wait_seconds: float = 8.0
    prompt_repeats: int = 2
    desk_caller_id: str = ""  # what the desk phone shows while it rings
    line: str = ""  # the clinic number the patient sees (CLINIC_LINE of clinic-outgoing)
    context: str = "clinic-outgoing"
    max_call_seconds: float = 3 * 3600.0
    phase: str = RINGING
    admin: str = ""
    bridged_at: float | None = None
    key: str = ""
    done: bool = False
    _ringing: set[str] = field(default_factory=set)
    _placed: bool = False
    _said: int = 0  # prompts said so far (the prompt and its repeats, then the details)
    _playback: str = ""

    def channel(self, extension: str) -> str:
        return f"{self.base}-{extension}"

    def start(self) -> list[f.Command]:
        out: list[f.Command] = [f.StartTimer(MAX_CALL, self.max_call_seconds)]
        for ext in self.desk_phones:
            ch = self.channel(ext)
            self._ringing.add(ch)
            out.append(f.Originate(ch, f"PJSIP/{ext}", self.ring_clinic_seconds, self.desk_caller_id,
                                   variables=(("CLINIC_LINE", self.line),) if self.line else ()))
        if not self.desk_phones:
            out += self._end(cr.NOT_STARTED, reason="нет телефона администратора")
        return out

    def feed(self, fact: f.Fact) -> list[f.Command]:
        if self.done:
            return []
        step = _STEPS.get(type(fact))
        return step(self, fact) if step is not None else []

    # --- what each fact does ----------------------------------------------------------------
    def _timer(self, fact: f.TimerDue) -> list[f.Command]:
        if fact.name == MAX_CALL:
            hang: list[f.Command] = [f.Hangup(ch) for ch in sorted(self._ringing | {self.admin} - {""})]
            return [*hang, *self._end(cr.FAILED, reason="звонок слишком долгий или потерял события")]
        if fact.name == KEY_WAIT and self.phase == PROMPT:
            if self._said >= max(1, self.prompt_repeats):
                return [f.Hangup(self.admin), *self._end(cr.CLINIC_NO_KEY)]
            return self._play(self.prompt)
        return []

    def _originate_failed(self, fact: f.OriginateFailed) -> list[f.Command]:
        self._placed |= fact.placed
        return self._clinic_gone(fact.channel, fact.reason)

    def _vanished(self, fact: f.Vanished) -> list[f.Command]:  # ended while the link to Asterisk was down
        if fact.channel == self.admin:
            return self._end(cr.INTERRUPTED, reason="связь с Asterisk прерывалась")
        return self._clinic_gone(fact.channel, "")

    def _hung_up(self, fact: f.HungUp) -> list[f.Command]:
        if fact.channel != self.admin:
            self._placed = True
            return self._clinic_gone(fact.channel, "") if fact.final else []
        return self._admin_gone(fact) if fact.final else []

    def _admin_key(self, fact: f.Key) -> list[f.Command]:
        return self._key(fact.digit) if fact.channel == self.admin else []

    def _admin_prompt_done(self, fact: f.PromptDone) -> list[f.Command]:
        if fact.channel != self.admin or fact.playback != self._playback:
            return []
        return self._prompt_done()

    def _dialled(self, fact: f.Dialled) -> list[f.Command]:
        if fact.channel != self.admin or self.phase != DIALLING:
            return []
        if fact.status == "ANSWER":
            self.phase, self.bridged_at = TALKING, fact.at
            return [f.Report("bridged")]
        outcome = _DIAL_STATUS.get(fact.status, cr.PATIENT_FAILED)
        return self._end(outcome, reason=f"Dial: {fact.status}"[:60])

    # --- steps ----------------------------------------------------------------------------------
    def _answered(self, fact: f.Answered) -> list[f.Command]:
        if self.phase != RINGING or fact.channel not in self._ringing:
            return [f.Hangup(fact.channel)] if fact.channel != self.admin else []
        self.admin, self.phase = fact.channel, PROMPT
        self._ringing.discard(fact.channel)
        others: list[f.Command] = [f.Hangup(ch) for ch in sorted(self._ringing)]
        self._ringing.clear()
        ext = fact.channel[len(self.base) + 1:]
        return [*others, f.Report(f"answered:{ext}"), *self._play(self.prompt)]

    def _key(self, digit: str) -> list[f.Command]:
        if self.phase != PROMPT or not digit:
            return []  # keys while the details are said or the patient is called mean nothing
        self.key = digit
        stop: list[f.Command] = [f.StopPlayback(self._playback), f.CancelTimer(KEY_WAIT)]
        if digit == "9":
            self.phase = CLOSING
            return [*stop, f.Report("already_booked"), *self._play(self.closed)]
        self.phase, self._said = DETAILS, 0
        return [*stop, f.Report("key"), *self._play(self.details[0])]

    def _prompt_done(self) -> list[f.Command]:
        if self.phase == PROMPT:
            return [f.StartTimer(KEY_WAIT, self.key_wait_seconds)]
        if self.phase == CLOSING:
            return [f.Hangup(self.admin), *self._end(cr.ALREADY_BOOKED)]
        if self.phase == DETAILS:
            if self._said < len(self.details):
                return self._play(self.details[self._said])
            self.phase = DIALLING
            variables = (("CLINIC_RING", str(self.ring_patient_seconds)),)
            return [f.Report("dialling"), f.Continue(self.admin, self.context, self.patient, variables)]
        return []

    def _admin_gone(self, fact: f.HungUp) -> list[f.Command]:
        if self.phase == TALKING and self.bridged_at is not None:
            talk = max(0.0, fact.at - self.bridged_at)
            return self._end(cr.CONTACTED if cr.contacted(talk) else cr.PATIENT_SHORT, talk=talk)
        if self.phase == CLOSING:
            return self._end(cr.ALREADY_BOOKED)
        return self._end(cr.CLINIC_NO_KEY if self.phase == PROMPT else cr.CLINIC_HANGUP)

    def _clinic_gone(self, channel: str, reason: str) -> list[f.Command]:
        self._ringing.discard(channel)
        if self.phase != RINGING or self._ringing:
            return []
        return self._end(cr.CLINIC_NO_ANSWER if self._placed else cr.NOT_STARTED, reason=reason[:200])

    def _play(self, media: str) -> list[f.Command]:
        self._said += 1
        self._playback = f"{self.admin}-pb-{self.phase}-{self._said}"
        return [f.Play(self.admin, self._playback, media)]

    def _end(self, outcome: str, *, reason: str = "", talk: float = 0.0) -> list[f.Command]:
        self.done = True
        return [f.CancelTimer(MAX_CALL), f.CancelTimer(KEY_WAIT),
                f.Outcome(outcome, self.key, self.bridged_at, reason, talk)]


# fact -> what it does (as the tracker's events): the phase decides inside each step
_STEPS: dict[type, Callable[[CallbackFlow, Any], list[f.Command]]] = {
    f.TimerDue: CallbackFlow._timer,
    f.OriginateFailed: CallbackFlow._originate_failed,
    f.Answered: CallbackFlow._answered,
    f.Vanished: CallbackFlow._vanished,
    f.HungUp: CallbackFlow._hung_up,
    f.Key: CallbackFlow._admin_key,
    f.PromptDone: CallbackFlow._admin_prompt_done,
    f.Dialled: CallbackFlow._dialled,
}

"""The website callback robot, wired (seed 003): the job table's ``callback`` jobs are claimed
as lines allow, the pure rules decide before and after each attempt, one pure flow per call
(``pbx.robots.callback.CallbackFlow``) runs on the shared ARI flow runner, and the storage
writes each decision in one transaction. Also sends the mail outbox.

Time comes from the injected clock. After a restart ``start()`` closes an attempt left open as
interrupted (and hangs its channels up); the request is tried again, never the same attempt.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from crm import callbacks, directory, mail, toll
from crm.clock import Clock
from crm.db import Database
from crm.rules import callback as cr
from crm.rules.chain import box_rings, box_takes
from pbx.ari.flow_runner import FlowRunner
from pbx.jobs.loop import JobLoop
from pbx.outbound.mailer import Mailer
from pbx.outbound.tts import PromptCache, TtsError, load_callback_phrases
from pbx.robots.callback import CallbackFlow
from pbx.settings import Settings

log = logging.getLogger(__name__)


class CallbackService(JobLoop):
    name = "callbacks"

    def __init__(self, db: Database, settings: Settings, clock: Clock, runner: FlowRunner | None,
                 prompts: PromptCache, mailer: Mailer, *,
                 busy_phones: Callable[[], set[str]] = set,
                 queue_phones: Callable[[str], set[str]] = lambda _q: set(),
                 other_robot: Callable[[], Awaitable[tuple[int, int, bool]]] | None = None,
                 send_messages: Callable[[], Any] | None = None) -> None:
        super().__init__(settings.robot.tick_seconds, db)
        self.db = db
        self.settings = settings
        self.clock = clock
        self.runner = runner
        self.prompts = prompts
        self.mailer = mailer
        self.tz = ZoneInfo(settings.time_zone)
        self.busy_phones = busy_phones  # desk phones on a call now (the live cards)
        self.queue_phones = queue_phones  # the queue's members (QueueStatus)
        # the confirmation robot: (its lines, its calls up, whether it has calls waiting)
        self.other_robot = other_robot
        self.send_messages = send_messages  # the message outbox's sender (the SMS)
        # desk phones the robot's own calls ring or hold (attempt -> phones): the next attempt
        # rings only the others, even before the call tracker shows them busy
        self.held: dict[str, set[str]] = {}
        self.branch_of: dict[str, int | None] = {}  # attempt -> its request's branch (lines per branch)

    async def start(self, *, loop: bool = True) -> None:
        leftovers = await callbacks.recover(self.db, self.clock.now())
        await mail.recover(self.db)
        if leftovers and self.runner is not None:
            phones = await self._all_phones()
            for base in leftovers:
                for ext in phones:
                    await self.runner.hangup(f"{base}-{ext}")
        if loop:
            self.start_loop()

    async def stop(self) -> None:
        await self.stop_loop()

    @property
    def active(self) -> int:
        return len(self.calls)

    async def work(self) -> None:
        """One pass: per branch with requests due, place calls while the branch has a free line
        and a free phone; then send the letters and messages waiting."""
        now = self.clock.now()
        if self.runner is not None and self.runner.ari.connected.is_set():
            for branch in await callbacks.due_branches(self.db, now):
                if not box_takes(branch, self.settings.asterisk.branches):
                    continue  # another branch's box calls it back, from its own desk phones
                s = await callbacks.settings(self.db, branch)
                if not s.enabled:
                    continue
                # one job at a time: a placed call holds the phones it rings, and a job nobody
                # could take stays queued untouched
                while await self._free_lines(s, branch) > 0 and (await self._phones(s))[1]:
                    claimed = await callbacks.claim(self.db, now, branch, 1)
                    if not claimed:
                        break
                    job = claimed[0]
                    try:
                        await self._job(job, s, now, branch)
                    except Exception:
                        log.exception("callback job %s failed; retried in a minute", job["id"])
                        await callbacks.release(self.db, job["id"], now + 60, "внутренняя ошибка")
        await self.send_mail()
        if self.send_messages is not None:
            await self.send_messages()

    async def _free_lines(self, s: cr.CallbackSettings, branch: int | None = None) -> int:
        """The branch's own limit, within the clinic's robot lines shared fairly with the
        confirmation robot."""
        free = max(0, s.max_concurrent_calls - sum(1 for b in self.branch_of.values() if b == branch))
        if self.other_robot is not None:
            total, others, waiting = await self.other_robot()
            free = min(free, cr.free_lines(total, self.active, others, waiting))
        return free

    async def _all_phones(self) -> list[str]:
        """The desk phones on this box's Asterisk (in a chain the table holds every box's)."""
        return [str(p["extension"]) for p in await directory.desk_phones_with_holders(self.db)
                if box_rings(p["branch_id"], self.settings.asterisk.branches)]

    async def _phones(self, s: cr.CallbackSettings) -> tuple[list[str], bool]:
        """Whom to ring and whether anybody is free: the named desk phone, or the queue's
        members that are not on a call (all of them busy: wait rather than ring a busy queue)."""
        wanted = [s.clinic_target] if s.clinic_target != "queue" else sorted(self.queue_phones(s.queue))
        if not wanted:
            wanted = await self._all_phones()
        taken = self.busy_phones().union(*self.held.values())
        free = [p for p in wanted if p not in taken]
        return free, bool(free)

    async def _job(self, job: dict[str, Any], s: cr.CallbackSettings, now: float, branch: int | None = None) -> None:
        req = await callbacks.request(self.db, job["subject_id"])
        if req is None or req["state"] != "open":
            await callbacks.close(self.db, job, job["subject_id"], req["outcome"] if req else "", "", now)
            return
        phones, free = await self._phones(s)
        decision = cr.before_attempt(await callbacks.facts(self.db, req, free), s, now, self.tz)
        if isinstance(decision, cr.Close):
            await callbacks.close(self.db, job, req["id"], decision.outcome, decision.reason, now)
        elif isinstance(decision, cr.GiveUp):
            await callbacks.close(self.db, job, req["id"], cr.CLOSED_GAVE_UP, decision.reason, now,
                                  emails=_emails(s), tz=self.tz, sender=s.mail_from,
                                  period=cr.period_words(s.give_up_minutes))
        elif isinstance(decision, cr.WaitUntil):
            await callbacks.release(self.db, job["id"], decision.at, decision.reason)
        elif reason := await toll.check(self.db, req["phone"], "", now):  # never a premium or foreign number
            await callbacks.close(self.db, job, req["id"], cr.CLOSED_REFUSED, reason, now)
        else:
            await self._place(job, req, s, phones, now, branch)

    async def _place(self, job: dict[str, Any], req: dict[str, Any], s: cr.CallbackSettings, phones: list[str],
                     now: float, branch: int | None = None) -> None:
        assert self.runner is not None
        try:
            fixed = load_callback_phrases()
            prompt = await self.prompts.path(cr.admin_prompt(req["source_name"]))
            details = [await self.prompts.path(t)
                       for t in cr.details(req["source_name"], req["doctor"], req["service"], fixed["connecting"])]
            closed = await self.prompts.path(fixed["closed"])
        except (TtsError, OSError):
            log.exception("callback: no prompts for request %s; retried in 5 min", req["id"])
            await callbacks.release(self.db, job["id"], now + 300, "Нет голосовых подсказок")
            return
        attempt = job["attempts"] + 1
        # unique beyond this database: the channel id becomes the call's linkedid in Asterisk's CDR
        base = f"cb-{job['id']}-{attempt}-{secrets.token_hex(4)}"
        flow = CallbackFlow(
            base=base, desk_phones=tuple(phones), patient=req["phone"].lstrip("+"), prompt=f"sound:{prompt}",
            details=tuple(f"sound:{p}" for p in details), closed=f"sound:{closed}",
            ring_clinic_seconds=s.ring_clinic_seconds, ring_patient_seconds=s.ring_patient_seconds,
            key_wait_seconds=s.key_wait_seconds, prompt_repeats=s.prompt_repeats,
            desk_caller_id=f'"Заявка {req["source_name"][:20]}" <{req["phone"].lstrip("+")}>', line=s.caller_id,
        )
        await callbacks.start_attempt(self.db, job, attempt, base, now)
        self.held[base] = set(phones)
        self.branch_of[base] = branch
        self.spawn(self._call(job, flow, s), base)

    async def _call(self, job: dict[str, Any], flow: CallbackFlow, s: cr.CallbackSettings) -> None:
        assert self.runner is not None
        started = self.clock.now()  # the next attempt is due retry_minutes after this one began

        async def progress(what: str) -> None:
            if what.startswith("answered:"):  # the other phones stopped ringing: free again
                self.held[flow.base] = {what.partition(":")[2]}
                self.wake()
            await callbacks.progress(self.db, flow.base, what, self.clock.now())

        try:
            out = await self.runner.run(flow, on_report=progress)
            outcome, talk, reason = out.outcome, out.talk, out.reason
        except Exception:  # a bug must not leave the job running forever
            log.exception("callback call %s failed", flow.base)
            outcome, talk, reason = cr.FAILED, 0.0, "внутренняя ошибка"
        finally:
            self.held.pop(flow.base, None)
            self.branch_of.pop(flow.base, None)
        now = self.clock.now()
        req = await callbacks.request(self.db, job["subject_id"])
        assert req is not None
        facts = await callbacks.facts(self.db, req, True)
        if cr.leg_of(outcome) == cr.PATIENT:  # this attempt counts too (written with the steps)
            facts = dataclasses.replace(facts, patient_failures=facts.patient_failures + 1)
        steps = cr.after_attempt(outcome, facts, s, now, self.tz, started=started)
        if req["state"] != "open":  # closed by hand during the call: no retry, no SMS; the job ends
            steps = [cr.Close(req["outcome"], "Заявка закрыта во время звонка")]
        texts = callbacks.Texts(cr.sms_text(req["source_name"], s.clinic_phone), _emails(s), self.tz, s.mail_from,
                                cr.period_words(s.give_up_minutes))
        await callbacks.end_attempt(self.db, job, flow.base, outcome, talk, reason, steps, now, texts)
        log.info("callback %s: %s (talk %.1f s) -> %s", flow.base, outcome, talk,
                 ", ".join(type(st).__name__ for st in steps))
        self.wake()

    async def send_mail(self) -> int:
        sent = 0
        if not self.mailer.configured:
            return 0
        for letter in await mail.claim(self.db, self.clock.now(), 20):
            error = await self.mailer.send(letter["to_addrs"].split(","), letter["subject"], letter["body"],
                                           letter["from_addr"])
            await mail.result(self.db, letter, error, self.clock.now())
            sent += not error
        return sent


def _emails(s: cr.CallbackSettings) -> tuple[str, ...]:
    return tuple(a.strip() for a in s.emails.replace(";", ",").split(",") if "@" in a)

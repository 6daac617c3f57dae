"""Pre-visit escort, wired: plans jobs for appointments, runs the due ones through the pure
rules, places robot calls (a concurrency limit from the clinic's settings), sends the outbox
through the gateways with fallbacks and retries, and writes off the day's messages.

Time comes from the injected clock, so tests set it; ``tick()`` is one pass and the
background loop just calls it every ``robot.tick_seconds``. After a restart ``start()``
recovers: jobs left running are queued again, an unfinished robot call is closed as
interrupted (and hung up) and its appointment gets the messages instead of a second call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from crm import clinic_settings, escort, escort_reports, jobs
from crm.aio import cancel_and_wait
from crm.clock import Clock
from crm.db import Database
from crm.rules import escort as rules
from crm.rules.escort import EscortSettings, Go, Skip, Wait
from pbx.jobs.confirmation_call import CallResult, RobotCaller
from pbx.jobs.loop import JobLoop
from pbx.outbound.gateways import Gateway
from pbx.outbound.tts import PromptCache, TtsError
from pbx.settings import Settings

log = logging.getLogger(__name__)
KIND = {rules.DETAILS: "details", rules.CONFIRMATION: "confirm", rules.REMINDER: "reminder"}
WRITE_OFF_KEY = "escort_write_off_day"
# the robot's greetings for the next day's calls are rendered ahead (a call then starts
# without waiting ~0.2 s for espeak-ng); a pass every ten minutes of clinic time
PRERENDER_AHEAD = 24 * 3600
PRERENDER_EVERY = 600
PRERENDER_BATCH = 5000


class EscortService(JobLoop):
    name = "escort"

    def __init__(self, db: Database, settings: Settings, clock: Clock, gateway: Gateway,
                 robot: RobotCaller | None, prompts: PromptCache) -> None:
        super().__init__(settings.robot.tick_seconds, db)
        self.db = db
        self.settings = settings
        self.clock = clock
        self.gateway = gateway
        self.robot = robot
        self.prompts = prompts
        self.tz = ZoneInfo(settings.time_zone)
        self._prerender_task: asyncio.Task[int] | None = None
        self._prerendered_at = float("-inf")
        self.secret = escort.link_secret(settings.web.cookie_secret)
        # appointments changed at or after this updated_at are looked at by the planner; the
        # same value is looked at again (>=), so a change within the same millisecond is not lost
        self._planned_to = ""
        # robot lines taken by the website callback robot (the lines are the clinic's, shared)
        self.shared_lines: Callable[[], int] = lambda: 0

    async def line_demand(self) -> tuple[int, int, bool]:
        """For the callback robot's fair share: the clinic's robot lines, the confirmation
        calls up, and whether confirmation calls are due and waiting."""
        s = await escort.settings(self.db)
        active = self.robot.active if self.robot is not None else 0
        return max(1, s.max_concurrent_calls), active, await escort.confirmations_due(self.db, self.clock.now())

    async def start(self, *, loop: bool = True) -> None:
        leftovers = await escort.recover(self.db, self.clock.now())
        if leftovers and self.robot is not None:
            await self.robot.hangup_leftovers(leftovers)
        if loop:
            self.start_loop()

    async def stop(self) -> None:
        await cancel_and_wait(self._prerender_task)
        await self.stop_loop()

    async def work(self) -> None:
        """One pass: plan, write off, run the due jobs, send the outbox, render ahead."""
        now = self.clock.now()
        _, self._planned_to = await escort.plan(self.db, now, self.tz, self._planned_to)
        await self._write_off(now)
        s = await escort.settings(self.db)
        # confirmation jobs only as many as the robot has free lines: the rest stay queued
        # untouched (no claim-and-release churn while a campaign runs)
        free = max(1, s.max_concurrent_calls) - (self.robot.active if self.robot else 0) - self.shared_lines()
        due = await escort.claim_due(self.db, now, 200, confirmation=False)
        due += await escort.claim_due(self.db, now, free, confirmation=True)
        for job in due:
            try:
                await self._job(job, s, now)
            except Exception:
                log.exception("escort job %s failed; retried in a minute", job["id"])
                await jobs.release(self.db, job["id"], now + 60)
        await self.send_messages()
        if s.confirmation_mode == "robot" and self.robot is not None:
            self._prerender_soon(now)

    def _prerender_soon(self, now: float) -> None:
        running = self._prerender_task is not None and not self._prerender_task.done()
        if running or now - self._prerendered_at < PRERENDER_EVERY:
            return
        self._prerendered_at = now
        self._prerender_task = asyncio.get_running_loop().create_task(
            self.prerender(now + PRERENDER_AHEAD), name="escort-prerender")

    async def prerender(self, until_ts: float) -> int:
        """Render the greetings of the confirmation calls due before ``until_ts``; returns how
        many were new. One at a time, so a campaign's calls keep the CPU."""
        rendered = 0
        try:
            for appointment_id in await escort.upcoming_confirmations(self.db, until_ts, PRERENDER_BATCH):
                subject = await escort.subject(self.db, appointment_id, self.tz)
                if subject is not None:
                    rendered += await self.prompts.ensure(rules.robot_text(subject.wording))
        except Exception:  # best effort: a call still renders its own greeting
            log.exception("robot greetings not rendered ahead; each call renders its own")
        if rendered:
            log.info("robot: %d greetings rendered ahead", rendered)
        return rendered

    # --- one job ----------------------------------------------------------------------------
    async def _job(self, job: dict[str, Any], s: EscortSettings, now: float) -> None:
        subject = await escort.subject(self.db, job["appointment_id"], self.tz)
        if subject is None:
            await escort.finish(self.db, job, "skipped", now, reason="Запись удалена")
            return
        if subject.facts.starts_ts != job["starts_ts"]:
            await escort.finish(self.db, job, "skipped", now, reason="Приём перенесён")
            return
        if job["step"] == "messages":  # after the robot (or an interrupted call)
            await self._messages(job, subject, "confirm", now)
            await escort.finish(self.db, job, "done", now, outcome=job["outcome"] or "messages")
            return
        if job["manual"]:  # «Позвонить сейчас»: no window, no retries
            decision: rules.Decision = Go("robot") if subject.facts.status == "unconfirmed" else \
                Skip("Статус записи не «Не подтверждён»")
        else:
            decision = rules.decide(job["scenario"], subject.facts, s, now, self.tz, forced=bool(job["forced"]))
        if isinstance(decision, Skip):
            await escort.finish(self.db, job, "skipped", now, reason=decision.reason)
        elif isinstance(decision, Wait):
            await jobs.release(self.db, job["id"], decision.until)
        elif isinstance(decision, Go) and decision.mode == "messages":
            job = job | {"mode": "messages"}
            await self._messages(job, subject, KIND[job["scenario"]], now)
            await escort.finish(self.db, job, "done", now, outcome="messages")
        elif isinstance(decision, Go):
            if self.robot is None or not self.robot.ari.connected.is_set():
                await jobs.release(self.db, job["id"], now + 60)  # ARI down: try again soon
            elif self.robot.active >= max(1, s.max_concurrent_calls):
                await jobs.release(self.db, job["id"], now)  # the next tick takes it
            else:
                await self._place(job, subject, s, now)

    async def _messages(self, job: dict[str, Any], subject: escort.Subject, kind: str, now: float) -> None:
        phone = subject.facts.mobile
        if phone is None:
            return
        link = f"{self.settings.robot.public_url}/e/{escort.link_token(self.secret, subject.facts.appointment_id, subject.facts.starts_ts)}"
        body = rules.message_text(kind, subject.wording, link)
        # the booking form's «СМС оповещение» asks for an SMS; otherwise push -> WhatsApp -> SMS
        chain = (rules.SMS,) if job["forced"] and kind == "details" else rules.channel_chain(subject.facts)
        await escort.enqueue(self.db, job, kind, chain, phone, body, now, self.tz)

    async def _place(self, job: dict[str, Any], subject: escort.Subject, s: EscortSettings, now: float) -> None:
        assert self.robot is not None
        try:
            greeting = await self.prompts.path(rules.robot_text(subject.wording))
        except TtsError:
            log.exception("robot: no greeting for appointment %s; messages instead", job["appointment_id"])
            await self._messages(job | {"mode": "robot"}, subject, "confirm", now)
            await escort.finish(self.db, job, "done", now, outcome="tts_failed")
            return
        attempt = job["attempts"] + 1
        channel_id = f"robot-{job['id']}-{attempt}"
        await escort.start_robot_call(self.db, job, attempt, channel_id, now)
        self.spawn(self._call(job | {"attempts": attempt, "mode": "robot"}, subject, s, greeting, channel_id),
                   channel_id)

    async def _call(self, job: dict[str, Any], subject: escort.Subject, s: EscortSettings, greeting: Path,
                    channel_id: str) -> None:
        assert self.robot is not None
        appointment_id = subject.facts.appointment_id

        async def decided(choice: str) -> None:  # the schedule changes while the robot still talks
            await escort.apply_choice(self.db, appointment_id, choice, self.clock.now(), "робот")

        try:
            result = await self.robot.call(subject.facts.mobile or "", greeting, channel_id,
                                           caller_id=s.caller_id, amd=s.amd, on_decided=decided)
        except Exception:  # a bug must not leave the job running forever: message instead
            log.exception("robot call %s failed", channel_id)
            result = CallResult("failed", reason="внутренняя ошибка")
        now = self.clock.now()
        await escort.end_robot_call(self.db, channel_id, result.outcome, result.keys, result.answered_at, now,
                                    result.reason)
        manual = bool(job["manual"])
        window_end = now if manual else rules.confirmation_window(subject.facts, self.tz)[1]
        # the choice itself (status, reschedule mark, the freed slot) was applied when the key
        # arrived (``decided``); what is left after the call is a retry or the messages
        steps = rules.after_call(result.outcome, job["attempts"], s, now, window_end)
        for step in steps:
            if isinstance(step, rules.RetryCall):
                await jobs.release(self.db, job["id"], step.at, step="call", mode="robot")
                return
            if isinstance(step, rules.SendMessages):
                await self._messages(job, subject, step.kind, now)
        await escort.finish(self.db, job, "done", now, outcome=result.outcome)
        self.wake()  # send the messages now

    # --- the outbox ----------------------------------------------------------------------------
    async def send_messages(self) -> int:
        sent = 0
        while True:
            batch = await escort.claim_messages(self.db, self.clock.now(), 50)
            if not batch:
                return sent
            for msg in batch:
                result = await self.gateway.send(msg["channel"], msg["phone"], msg["body"], msg["msg_key"])
                await escort.message_result(self.db, msg, result.status, self.clock.now(),
                                            gateway_id=result.gateway_id, error=result.error)
                sent += result.status == "sent"

    async def _write_off(self, now: float) -> None:
        today = datetime.fromtimestamp(now, self.tz).date().isoformat()
        if await clinic_settings.get(self.db, WRITE_OFF_KEY) == today:
            return
        n = await escort_reports.write_off(self.db, now, self.tz)
        await clinic_settings.put(self.db, WRITE_OFF_KEY, today)
        if n:
            log.info("escort: %d messages written off", n)

"""Escort storage: its jobs (through ``crm.jobs``), robot call records, the message outbox,
write-offs, the per-appointment log, replies and reports. All writes are single
transactions; the decisions themselves are in the pure ``crm.rules.escort``."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm import clinic_settings, jobs, schedule, tasks
from crm.claim import claim_rows
from crm.db import Database
from crm.rules import escort as rules
from crm.rules.escort import CONFIRMATION, DETAILS, REMINDER, EscortSettings, Facts, Wording

SETTINGS_KEY = "escort"
RECENT = 3600.0  # details go only to appointments created within the last hour
MESSAGE_TRIES = 3


async def settings(db: Database) -> EscortSettings:
    return EscortSettings.from_dict(await clinic_settings.get(db, SETTINGS_KEY))


async def save_settings(db: Database, s: EscortSettings) -> None:
    await clinic_settings.put(db, SETTINGS_KEY, s.__dict__)


# --- planning and the job queue -----------------------------------------------------------
async def plan(db: Database, now: float, tz: ZoneInfo, changed_since: str = "") -> tuple[int, str]:
    """Create the jobs future appointments need (idempotent on job_key), looking only at
    appointments changed since ``changed_since`` (their ``updated_at``; empty: all).
    Returns how many jobs were made and the watermark for the next pass."""
    mark = await db.fetchone("SELECT MAX(updated_at) FROM appointments")
    watermark = str(mark[0]) if mark and mark[0] else changed_since
    rows = await db.fetchall(
        "SELECT a.id, a.starts_ts, a.created_ts, a.notify_requested FROM appointments a"
        " WHERE a.updated_at >= ? AND a.starts_ts > ? AND a.status IN ('unconfirmed', 'confirmed')"
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.subject_kind = 'appointment' AND j.subject_id = a.id"
        " AND j.scenario = 'reminder' AND j.subject_ts = a.starts_ts)",
        (changed_since, now),
    )
    if not rows:
        return 0, watermark
    stamp = db.stamp()
    made = 0
    async with db.transaction() as tx:
        for r in rows:
            f = Facts(r["id"], "unconfirmed", r["starts_ts"], r["created_ts"])
            wanted = [
                (f"{CONFIRMATION}:{r['id']}:{int(r['starts_ts'])}", CONFIRMATION, rules.due(CONFIRMATION, f, tz), 0),
                (f"{REMINDER}:{r['id']}:{int(r['starts_ts'])}", REMINDER, rules.due(REMINDER, f, tz), 0),
            ]
            if r["notify_requested"] or r["created_ts"] >= now - RECENT:
                wanted.append((f"{DETAILS}:{r['id']}", DETAILS, r["created_ts"], int(r["notify_requested"])))
            for key, scenario, due_ts, forced in wanted:
                cur = await tx.execute(
                    "INSERT INTO jobs (job_key, kind, scenario, subject_kind, subject_id, subject_ts, due_ts, forced,"
                    " created_at, updated_at) VALUES (?, 'escort', ?, 'appointment', ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (job_key) DO NOTHING",
                    (key, scenario, r["id"], r["starts_ts"], due_ts, forced, stamp, stamp),
                )
                made += cur.rowcount
    return made, watermark


async def call_now(db: Database, appointment_id: int, now: float) -> None:
    """A robot call right away, outside the day-before window (the panel's «Позвонить
    сейчас»: checking the robot, or a patient who asked to be called)."""
    row = await db.fetchone("SELECT starts_ts FROM appointments WHERE id = ?", (appointment_id,))
    if row is None:
        raise KeyError(appointment_id)
    stamp = db.stamp()
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO jobs (job_key, kind, scenario, subject_kind, subject_id, subject_ts, due_ts, step, mode,"
            " forced, manual, created_at, updated_at) VALUES (?, 'escort', ?, 'appointment', ?, ?, ?, 'call', 'robot',"
            " 1, 1, ?, ?) ON CONFLICT (job_key) DO NOTHING",
            (f"manual:{appointment_id}:{int(now)}", CONFIRMATION, appointment_id, row[0], now, stamp, stamp),
        )


async def claim_due(db: Database, now: float, limit: int, *, confirmation: bool | None = None) -> list[dict[str, Any]]:
    """Take due jobs (pending -> running) in one transaction: a job runs once at a time.
    ``confirmation`` True/False takes only confirmation jobs (they may need the robot, whose
    free lines bound the limit) or only the others."""
    only = {None: "", True: " AND scenario = 'confirmation'", False: " AND scenario <> 'confirmation'"}[confirmation]
    return await jobs.claim_jobs(db, "escort", now, limit, only)


async def confirmations_due(db: Database, now: float) -> bool:
    row = await db.fetchone(
        "SELECT 1 FROM jobs WHERE kind = 'escort' AND state = 'pending' AND scenario = 'confirmation'"
        " AND step <> 'messages' AND due_ts <= ? LIMIT 1", (now,))
    return row is not None


async def upcoming_confirmations(db: Database, until_ts: float, limit: int) -> list[int]:
    """Appointments whose confirmation job is still to run before ``until_ts`` (the robot's
    greetings are rendered for them ahead of the calls)."""
    rows = await db.fetchall(
        "SELECT subject_id FROM jobs WHERE kind = 'escort' AND state = 'pending' AND scenario = 'confirmation'"
        " AND step <> 'messages' AND due_ts <= ? ORDER BY due_ts, id LIMIT ?",
        (until_ts, limit),
    )
    return [r[0] for r in rows]


async def finish(db: Database, job: dict[str, Any], state: str, now: float, *, outcome: str = "",
                 reason: str = "") -> None:
    async with db.transaction() as tx:
        await jobs.finish_in(tx, job["id"], state, outcome=outcome, reason=reason)
        if state == "skipped":
            await _log(tx, job["appointment_id"], job["scenario"], now, "skip", detail=reason)


async def recover(db: Database, now: float) -> list[str]:
    """After a restart: jobs left running go back to the queue; a robot call left unfinished
    is closed as interrupted and its job goes on to the messages (never a second call for
    the same attempt). Returns the channel ids to hang up if Asterisk still has them."""
    async with db.transaction() as tx:
        open_calls = await (await tx.execute(
            "SELECT id, job_id, appointment_id, channel_id FROM robot_calls WHERE outcome = ''"
        )).fetchall()
        for c in open_calls:
            await tx.execute("UPDATE robot_calls SET outcome = 'interrupted', ended_ts = ? WHERE id = ?",
                             (now, c["id"]))
            await jobs.release_in(tx, c["job_id"], now, step="messages", only_open=True)
            await _log(tx, c["appointment_id"], CONFIRMATION, now, "call", outcome="interrupted",
                       detail="Звонок прерван перезапуском сервера")
        await jobs.requeue_running_in(tx, "escort")
        await tx.execute("UPDATE outbox SET state = 'queued' WHERE state = 'sending'")
    return [c["channel_id"] for c in open_calls]


# --- what the rules need ------------------------------------------------------------------
@dataclass(frozen=True)
class Subject:
    facts: Facts
    wording: Wording
    patient_id: int
    specialty: str


async def subject(db: Database, appointment_id: int, tz: ZoneInfo) -> Subject | None:
    row = await db.fetchone(
        "SELECT a.*, p.first_name, p.middle_name, p.consent_pd, p.notify_opt_out, p.push_enabled,"
        " d.full_name AS doctor, d.specialty, d.anonymous_appointments,"
        " COALESCE(NULLIF(b.message_name, ''), b.name, '') AS clinic"
        " FROM appointments a JOIN patients p ON p.id = a.patient_id JOIN doctors d ON d.id = a.doctor_id"
        " LEFT JOIN branches b ON b.id = a.branch_id WHERE a.id = ?",
        (appointment_id,),
    )
    if row is None:
        return None
    phones = await db.fetchall(
        "SELECT e164, kind FROM patient_phones WHERE patient_id = ? ORDER BY id", (row["patient_id"],)
    )
    facts = Facts(
        appointment_id=row["id"], status=row["status"], starts_ts=row["starts_ts"],
        created_ts=row["created_ts"], source=row["source"], kind=row["kind"],
        anonymous=bool(row["anonymous"]), doctor_anonymous=bool(row["anonymous_appointments"]),
        consent=bool(row["consent_pd"]), opted_out=bool(row["notify_opt_out"]),
        phones=tuple((p[0], p[1]) for p in phones), push_enabled=bool(row["push_enabled"]),
    )
    wording = Wording(row["first_name"], row["middle_name"], row["doctor"], row["specialty"],
                      row["clinic"], datetime.fromtimestamp(row["starts_ts"], tz))
    return Subject(facts, wording, row["patient_id"], row["specialty"])


def link_secret(cookie_secret: str) -> str:
    """The key of the patients' links, derived from the installation's cookie secret."""
    return "link:" + cookie_secret


def link_token(secret: str, appointment_id: int, starts_ts: float) -> str:
    mac = hmac.new(secret.encode(), f"{appointment_id}:{int(starts_ts)}".encode(), hashlib.sha256)
    return f"{appointment_id}-{mac.hexdigest()[:20]}"


async def appointment_by_token(db: Database, secret: str, token: str) -> dict[str, Any] | None:
    head, _, _ = token.partition("-")
    # ASCII digits only, and an id SQLite can hold (Unicode digits and 20-digit ids were 500s)
    if not (head.isascii() and head.isdigit()) or len(head) > 18 or len(token) > 40:
        return None
    appt = await schedule.get_appointment(db, int(head))
    if appt is None or not hmac.compare_digest(token, link_token(secret, appt["id"], appt["starts_ts"])):
        return None
    return appt


# --- robot calls ----------------------------------------------------------------------------
async def start_robot_call(db: Database, job: dict[str, Any], attempt: int, channel_id: str,
                           now: float) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO robot_calls (job_id, appointment_id, attempt, channel_id, started_ts)"
            " VALUES (?, ?, ?, ?, ?)",
            (job["id"], job["appointment_id"], attempt, channel_id, now),
        )
        await tx.execute("UPDATE jobs SET attempts = ?, step = 'call', mode = 'robot' WHERE id = ?",
                         (attempt, job["id"]))


async def end_robot_call(db: Database, channel_id: str, outcome: str, keys: str,
                         answered_ts: float | None, now: float, reason: str = "") -> None:
    async with db.transaction() as tx:
        row = await (await tx.execute(
            "UPDATE robot_calls SET outcome = ?, keys = ?, answered_ts = ?, ended_ts = ?"
            " WHERE channel_id = ? AND outcome = '' RETURNING appointment_id, attempt",
            (outcome, keys[:20], answered_ts, now, channel_id),
        )).fetchone()
        if row:
            await _log(tx, row[0], CONFIRMATION, now, "call", outcome=outcome,
                       detail=f"попытка {row[1]}" + (f", нажато {keys}" if keys else "")
                       + (f", {reason}" if reason else ""))


async def apply_choice(db: Database, appointment_id: int, choice: str, now: float, via: str) -> None:
    """The patient's answer (robot key, reply, link): the schedule changes at once, every step
    of ``rules.choice_steps`` in one transaction."""
    offers = await _slot_offers(db, appointment_id) if choice == "cancelled" else []
    async with db.transaction() as tx:
        await _apply_choice(tx, appointment_id, choice, now, via, offers)


async def _apply_choice(tx: Any, appointment_id: int, choice: str, now: float, via: str,
                        offers: list[tuple[int, str, date]]) -> None:
    for step in rules.choice_steps(choice):
        if isinstance(step, rules.MarkReschedule):
            await tx.execute("UPDATE appointments SET needs_reschedule = 1, updated_at = ? WHERE id = ?",
                             (tx.stamp(), appointment_id))
        elif isinstance(step, rules.SetStatus):
            cur = await tx.execute(
                "UPDATE appointments SET status = ?, updated_at = ? WHERE id = ? AND status IN"
                " ('unconfirmed', 'confirmed') RETURNING patient_id", (step.status, tx.stamp(), appointment_id))
            row = await cur.fetchone()
            if row is not None:  # the appointment's history: the patient answered (robot, reply, link)
                await schedule.log_action(tx, "status", now, row[0], appointment_id=appointment_id,
                                          detail=f"-> {step.status} ({via})")
        elif isinstance(step, rules.OfferSlot):
            for patient_id, title, due in offers:
                await tasks.insert_task(tx, patient_id, title, due, None)
    await _log(tx, appointment_id, CONFIRMATION, now, "status", outcome=choice, detail=via)


async def _slot_offers(db: Database, appointment_id: int) -> list[tuple[int, str, date]]:
    """A slot freed by the patient goes to the waiting list: a task per matching entry (up to
    five), with the patient's number one click away in the tasks page."""
    appt = await schedule.get_appointment(db, appointment_id)
    if appt is None:
        return []
    when = appt["starts_at"].replace("T", " ")
    due = date.fromisoformat(appt["starts_at"][:10]) - timedelta(days=1)
    return [(w["patient_id"], f"Освободилось время {when} у врача {appt['doctor_name']}: предложить", due)
            for w in (await schedule.waiting(db, appt["specialty"]))[:5]]


# --- the outbox ----------------------------------------------------------------------------
async def enqueue(db: Database, job: dict[str, Any], kind: str, chain: tuple[str, ...], phone: str,
                  body: str, now: float, tz: ZoneInfo) -> None:
    """The first channel of the chain; the rest are tried when it has no account or fails. A
    message queued outside its hours waits for the morning (``rules.message_time``)."""
    async with db.transaction() as tx:
        await _enqueue(tx, job["id"], job["appointment_id"], job["scenario"], kind, chain, phone, body,
                       now, job.get("mode") == "robot",
                       rules.message_time(now, tz, job["scenario"], asked_for_now=bool(job.get("forced")) and not job.get("manual")))


async def _enqueue(tx: Any, job_id: int | None, appointment_id: int | None, scenario: str, kind: str,
                   chain: tuple[str, ...], phone: str, body: str, now: float, with_robot: bool,
                   not_before: float | None = None) -> None:
    channel, rest = chain[0], chain[1:]
    due = max(now, not_before or now) + rules.first_try_delay(channel, scenario)
    await tx.execute(
        "INSERT INTO outbox (msg_key, job_id, appointment_id, scenario, kind, channel, fallback, phone,"
        " body, next_try_ts, price, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (msg_key) DO NOTHING",
        (f"{job_id}:{kind}:{channel}", job_id, appointment_id, scenario, kind, channel, ",".join(rest),
         phone, body, due, rules.price(channel, scenario, with_robot), now),
    )


async def claim_messages(db: Database, now: float, limit: int) -> list[dict[str, Any]]:
    async with db.transaction() as tx:
        return await claim_rows(tx, "outbox", "state = 'queued' AND next_try_ts <= ?", "next_try_ts, id", (now,),
                                limit, "state = 'sending'", ())


async def message_result(db: Database, msg: dict[str, Any], result: str, now: float, *,
                         gateway_id: str = "", error: str = "") -> None:
    """sent | no_account (next channel at once) | failed (retry, then the next channel)."""
    async with db.transaction() as tx:
        if result == "sent":
            await tx.execute(
                "UPDATE outbox SET state = 'sent', sent_ts = ?, gateway_id = ?, attempts = attempts + 1,"
                " error = '' WHERE id = ?",
                (now, gateway_id or None, msg["id"]),
            )
            if msg["appointment_id"]:
                await _log(tx, msg["appointment_id"], msg["scenario"], now, "message", channel=msg["channel"],
                           outcome="sent", detail=msg["kind"])
            return
        attempts = msg["attempts"] + 1
        if result == "failed" and attempts < MESSAGE_TRIES:
            await tx.execute(
                "UPDATE outbox SET state = 'queued', attempts = ?, next_try_ts = ?, error = ? WHERE id = ?",
                (attempts, now + 60 * attempts, error[:300], msg["id"]),
            )
            return
        final = "no_account" if result == "no_account" else "failed"
        await tx.execute("UPDATE outbox SET state = ?, attempts = ?, error = ?, price = 0 WHERE id = ?",
                         (final, attempts, error[:300], msg["id"]))
        if msg["appointment_id"]:
            await _log(tx, msg["appointment_id"], msg["scenario"], now, "message", channel=msg["channel"],
                       outcome=final, detail=error[:200])
        rest = tuple(c for c in msg["fallback"].split(",") if c)
        if rest:
            with_robot = await _job_mode(tx, msg) == "robot"
            await _enqueue(tx, msg["job_id"], msg["appointment_id"], msg["scenario"], msg["kind"], rest,
                           msg["phone"], msg["body"], now, with_robot)


async def _job_mode(tx: Any, msg: dict[str, Any]) -> str:
    if msg["job_id"] is None:
        return ""
    row = await (await tx.execute("SELECT mode FROM jobs WHERE id = ?", (msg["job_id"],))).fetchone()
    return str(row[0]) if row else ""


async def delivery(db: Database, gateway_id: str, state: str) -> bool:
    if state not in ("delivered", "undelivered"):
        return False
    async with db.transaction() as tx:
        cur = await tx.execute(
            "UPDATE outbox SET state = ? WHERE gateway_id = ? AND state IN ('sent', 'delivered', 'undelivered')",
            (state, gateway_id),
        )
        return cur.rowcount > 0


async def accept_reply(db: Database, phone: str, text: str, now: float) -> str:
    """A WhatsApp/SMS reply to a confirmation message: accepted only while the appointment is
    still «Не подтверждён» (seed 002). Returns what happened, for the gateway's log. The choice
    and the log line are one transaction."""
    choice = rules.reply_choice(text)
    row = await db.fetchone(
        "SELECT o.appointment_id FROM outbox o WHERE o.phone = ? AND o.kind = 'confirm'"
        " AND o.state IN ('sent', 'delivered') AND o.created_ts >= ? ORDER BY o.created_ts DESC LIMIT 1",
        (phone, now - 3 * 86400),
    )
    if row is None:
        return "no_message"
    appointment_id = int(row[0])
    appt = await schedule.get_appointment(db, appointment_id)
    offers = await _slot_offers(db, appointment_id) if choice == "cancelled" else []
    async with db.transaction() as tx:
        if choice is None:
            status = "not_understood"
        elif appt is None or appt["status"] != "unconfirmed":
            status = "ignored_not_unconfirmed"
        else:
            await _apply_choice(tx, appointment_id, choice, now, "ответ на сообщение", offers)
            status = "accepted"
        await _log(tx, appointment_id, CONFIRMATION, now, "reply", outcome=status, detail=text[:100])
    return status


async def _log(tx: Any, appointment_id: int, scenario: str, ts: float, what: str, *, channel: str = "",
               outcome: str = "", detail: str = "") -> None:
    await tx.execute(
        "INSERT INTO escort_log (appointment_id, scenario, ts, what, channel, outcome, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (appointment_id, scenario, ts, what, channel, outcome, detail),
    )


async def details_progress(db: Database, appointment_id: int) -> dict[str, Any]:
    """Where the «Детали записи» message of one appointment is: its job (state, reason) and its
    latest message (channel, state, error); empty values when not planned yet."""
    job = await db.fetchone("SELECT state, reason FROM jobs WHERE job_key = ?", (f"{DETAILS}:{appointment_id}",))
    msg = await db.fetchone("SELECT channel, state, error FROM outbox WHERE appointment_id = ? AND scenario = ?"
                            " ORDER BY id DESC LIMIT 1", (appointment_id, DETAILS))
    return {"job_state": job["state"] if job else None, "job_reason": job["reason"] if job else "",
            "channel": msg["channel"] if msg else "sms", "message_state": msg["state"] if msg else None,
            "message_error": msg["error"] if msg else ""}


async def appointment_log(db: Database, appointment_id: int) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT * FROM escort_log WHERE appointment_id = ? ORDER BY ts, id", (appointment_id,)
    )
    return [dict(r) for r in rows]

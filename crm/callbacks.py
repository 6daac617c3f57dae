"""Website callback requests (seed 003) in storage: sources, requests (idempotent intake, joining
a repeat), the robot's attempts, what the rules need to know before an attempt, and closing a
request with its SMS and e-mails in one transaction. The decisions are the pure
``crm.rules.callback``; this module fetches rows and writes what they decided."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from crm import clinic_settings, jobs, mail
from crm.db import Database
from crm.rules import callback as cr
from crm.rules import escort as rules

SETTINGS_KEY = "callback"
UTC_ZONE = ZoneInfo("UTC")
KIND = "callback"


def _key(branch_id: int | None) -> str:
    return SETTINGS_KEY if branch_id is None else f"{SETTINGS_KEY}:{branch_id}"


async def settings(db: Database, branch_id: int | None = None) -> cr.CallbackSettings:
    """A branch's robot settings; a branch without its own has the clinic's."""
    raw = await clinic_settings.get(db, _key(branch_id)) if branch_id is not None else None
    return cr.CallbackSettings.from_dict(raw if raw is not None else await clinic_settings.get(db, SETTINGS_KEY))


async def save_settings(db: Database, s: cr.CallbackSettings, branch_id: int | None = None) -> None:
    await clinic_settings.put(db, _key(branch_id), s.__dict__)


async def due_branches(db: Database, now: float) -> list[int | None]:
    """The branches with callback jobs due now (None: requests of no branch)."""
    rows = await db.fetchall(
        "SELECT DISTINCT r.branch_id FROM jobs j JOIN callback_requests r ON r.id = j.subject_id"
        " WHERE j.kind = 'callback' AND j.state = 'pending' AND j.due_ts <= ?", (now,))
    return [r[0] for r in rows]


async def claim(db: Database, now: float, branch_id: int | None, limit: int) -> list[dict[str, Any]]:
    """A branch's due callback jobs, through the job table's one claim."""
    return await jobs.claim_jobs(db, KIND, now, limit, " AND subject_id IN (SELECT id FROM callback_requests"
                            " WHERE branch_id IS ?)", (branch_id,))


# --- sources ----------------------------------------------------------------------------------
async def sources(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall("SELECT * FROM callback_sources ORDER BY code")]


async def source(db: Database, code: str) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT * FROM callback_sources WHERE code = ?", (code,))
    return dict(row) if row else None


async def save_source(db: Database, code: str, spoken_name: str, *, secret: str = "", token: str = "",
                      enabled: bool = True, branch_id: int | None = None) -> int:
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO callback_sources (code, spoken_name, secret, token, enabled, branch_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (code) DO UPDATE SET spoken_name = excluded.spoken_name,"
            " secret = excluded.secret, token = excluded.token, enabled = excluded.enabled,"
            " branch_id = excluded.branch_id RETURNING id",
            (code, spoken_name, secret, token, int(enabled), branch_id, tx.stamp()),
        )
        return int((await cur.fetchone())[0])


async def remember_signature(db: Database, signature: str, now: float, keep: float) -> bool:
    """False when this signature was seen before (a replay). Old ones are forgotten after
    ``keep`` seconds: by then their timestamp is refused anyway."""
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM webhook_seen WHERE seen_ts < ?", (now - keep,))
        cur = await tx.execute("INSERT INTO webhook_seen (signature, seen_ts) VALUES (?, ?)"
                               " ON CONFLICT (signature) DO NOTHING", (signature, now))
        return cur.rowcount == 1


# --- intake -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewRequest:
    phone: str  # E.164
    source_name: str
    source_id: int | None = None
    external_id: str | None = None
    patient_name: str = ""
    doctor: str = ""
    service: str = ""
    desired: str = ""
    comment: str = ""
    utm: dict[str, str] = field(default_factory=dict)
    created_by: int | None = None
    branch_id: int | None = None


@dataclass(frozen=True)
class Intake:
    request_id: int
    created: bool  # False: the same (source, external id) came before, or it joined an open one
    joined: bool = False


AFTER_HOURS_SOURCE = "телефона в нерабочее время"  # the robot tells the admin «Заявка на запись с …»


async def after_hours_request(db: Database, e164: str, did: str, now: float) -> Intake:
    """A caller who rang a clinic number outside its hours (issue #29): a callback request of
    the number's branch, joined with their open one like any other."""
    row = await db.fetchone("SELECT branch_id FROM clinic_numbers WHERE did = ?", (did,))
    return await create_request(db, NewRequest(
        phone=e164, source_name=AFTER_HOURS_SOURCE, branch_id=row[0] if row is not None else None,
        comment=f"Звонок на номер клиники {did} в нерабочее время"), now)


async def create_request(db: Database, req: NewRequest, now: float) -> Intake:
    """Idempotent on (source, external id); a request of the same number and source within
    24 h of an open one joins it instead of ringing twice. The job is made in the same
    transaction, so a request is never left without its robot."""
    async with db.transaction() as tx:
        if req.external_id:
            row = await (await tx.execute(
                "SELECT id FROM callback_requests WHERE source_id IS ? AND external_id = ?",
                (req.source_id, req.external_id))).fetchone()
            if row:
                return Intake(int(row[0]), created=False)
        open_rows = await (await tx.execute(
            "SELECT id, created_ts FROM callback_requests WHERE phone = ? AND source_name = ? AND state = 'open'"
            " ORDER BY created_ts DESC LIMIT 5", (req.phone, req.source_name))).fetchall()
        for r in open_rows:
            if cr.joins(r["created_ts"], now):
                await tx.execute("UPDATE callback_requests SET joined = joined + 1 WHERE id = ?", (r["id"],))
                return Intake(int(r["id"]), created=False, joined=True)
        patient = await (await tx.execute(
            "SELECT patient_id FROM patient_phones WHERE e164 = ? ORDER BY patient_id LIMIT 1", (req.phone,)
        )).fetchone()
        cur = await tx.execute(
            "INSERT INTO callback_requests (source_id, source_name, external_id, branch_id, patient_name, phone,"
            " patient_id, doctor, service, desired, comment, utm, created_ts, created_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (req.source_id, req.source_name, req.external_id, req.branch_id, req.patient_name, req.phone,
             patient[0] if patient else None, req.doctor, req.service, req.desired, req.comment,
             json.dumps(req.utm, ensure_ascii=False), now, req.created_by),
        )
        request_id = int((await cur.fetchone())[0])
        stamp = tx.stamp()
        await tx.execute(
            "INSERT INTO jobs (job_key, kind, scenario, subject_kind, subject_id, subject_ts, due_ts, created_at,"
            " updated_at) VALUES (?, ?, 'callback', 'request', ?, ?, ?, ?, ?)",
            (f"callback:{request_id}", KIND, request_id, now, now, stamp, stamp),
        )
        return Intake(request_id, created=True)


# --- before an attempt ------------------------------------------------------------------------
async def source_counts(db: Database, source_id: int, now: float) -> tuple[int, int]:
    """Requests a source sent in the last minute and the last day (its share, issue #30)."""
    row = await db.fetchone(
        "SELECT COALESCE(SUM(CASE WHEN created_ts >= ? THEN 1 ELSE 0 END), 0), COUNT(*) FROM callback_requests"
        " WHERE source_id = ? AND created_ts >= ?", (now - 60, source_id, now - 86400))
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


async def request(db: Database, request_id: int) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT * FROM callback_requests WHERE id = ?", (request_id,))
    return dict(row) if row else None


async def facts(db: Database, req: dict[str, Any], admins_free: bool) -> cr.RequestFacts:
    """What the rules decide on: the attempts so far, and whether the patient booked or talked
    with the clinic since the request (any of their numbers' patients, a guardian's wards;
    an answered call either way, not one of the robot's own)."""
    since, phone = req["created_ts"], req["phone"]
    booked = await db.fetchone(
        "SELECT 1 FROM appointments a WHERE a.created_ts > ? AND a.patient_id IN ("
        " SELECT patient_id FROM patient_phones WHERE e164 = ?"
        " UNION SELECT g.patient_id FROM guardianships g JOIN contact_phones c"
        "  ON c.owner_kind = 'guardian' AND c.owner_id = g.guardian_id WHERE c.e164 = ?) LIMIT 1",
        (since, phone, phone),
    )
    talked = await db.fetchone(
        "SELECT 1 FROM calls c WHERE c.phone_e164 = ? AND c.answered_at IS NOT NULL AND c.started_at > ?"
        " AND c.linkedid NOT IN (SELECT linkedid FROM callback_attempts WHERE linkedid <> '') LIMIT 1",
        (phone, datetime.fromtimestamp(since, UTC).isoformat(timespec="milliseconds")),
    )
    failures = await db.fetchone(
        "SELECT COUNT(*) FROM callback_attempts WHERE request_id = ? AND leg = 'patient'", (req["id"],))
    return cr.RequestFacts(
        created_ts=since, first_try_ts=req["first_try_ts"], patient_failures=int(failures[0]) if failures else 0,
        sms_sent=bool(req["sms_sent"]), booked_since=booked is not None, talked_since=talked is not None,
        admins_free=admins_free,
    )


async def release(db: Database, job_id: int, due_ts: float, reason: str = "") -> None:
    await jobs.release(db, job_id, due_ts, reason=reason)


# --- attempts ---------------------------------------------------------------------------------
async def start_attempt(db: Database, job: dict[str, Any], attempt: int, base: str, now: float) -> None:
    """Written before the call is placed: after a crash it is closed as interrupted, never
    placed twice."""
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO callback_attempts (request_id, job_id, attempt, channel_base, started_ts)"
            " VALUES (?, ?, ?, ?, ?)", (job["subject_id"], job["id"], attempt, base, now))
        await tx.execute("UPDATE jobs SET attempts = ?, updated_at = ? WHERE id = ?", (attempt, tx.stamp(), job["id"]))
        await tx.execute("UPDATE callback_requests SET first_try_ts = COALESCE(first_try_ts, ?) WHERE id = ?",
                         (now, job["subject_id"]))


async def progress(db: Database, base: str, what: str, now: float) -> None:
    """The call's steps as they happen: who answered, the key, the patient bridged."""
    async with db.transaction() as tx:
        if what.startswith("answered:"):
            ext = what.partition(":")[2]
            await tx.execute("UPDATE callback_attempts SET admin_ext = ?, admin_ts = ? WHERE channel_base = ?",
                             (ext, now, base))
        elif what in ("key", "already_booked"):
            await tx.execute("UPDATE callback_attempts SET key_ts = ? WHERE channel_base = ?", (now, base))
        elif what == "dialling":  # from here the attempt is a CRM call, linked by its linkedid
            await tx.execute("UPDATE callback_attempts SET linkedid = channel_base || '-' || admin_ext"
                             " WHERE channel_base = ?", (base,))
        elif what == "bridged":
            await tx.execute("UPDATE callback_attempts SET patient_ts = ? WHERE channel_base = ?", (now, base))


@dataclass(frozen=True)
class Texts:
    """What the robot writes, rendered by the caller (the rules' wording)."""

    sms: str
    emails: tuple[str, ...]
    tz: ZoneInfo
    sender: str = ""  # the branch's own From (empty: the server's)
    period: str = "2,5 часа"  # the configured give-up period, as the letter says it


async def end_attempt(db: Database, job: dict[str, Any], base: str, outcome: str, talk: float, reason: str,
                      steps: list[cr.Step], now: float, texts: Texts) -> None:
    """The attempt's end and everything the retry policy decided, in one transaction: the
    request closed (and the clinic e-mailed), or the job due again; the SMS queued once."""
    request_id = job["subject_id"]
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE callback_attempts SET outcome = ?, leg = ?, talk_seconds = ?, reason = ?, ended_ts = ?"
            " WHERE channel_base = ?", (outcome, cr.leg_of(outcome), talk, reason[:200], now, base))
        for step in steps:
            if isinstance(step, cr.SendSms):
                await _queue_sms(tx, job, request_id, texts.sms, now)
            elif isinstance(step, cr.WaitUntil):
                await jobs.release_in(tx, job["id"], step.at, reason=step.reason)
            elif isinstance(step, cr.Close | cr.GiveUp):
                closed = step.outcome if isinstance(step, cr.Close) else cr.CLOSED_GAVE_UP
                linked = base if closed == cr.CLOSED_CONTACTED else ""
                await _close(tx, job["id"], request_id, closed, step.reason, now, linked_base=linked)
                await _mail_about(tx, request_id, closed, texts.emails, texts.tz, now, texts.sender, texts.period)


async def close(db: Database, job: dict[str, Any] | None, request_id: int, outcome: str, reason: str, now: float,
                emails: tuple[str, ...] = (), tz: ZoneInfo = UTC_ZONE, sender: str = "",
                period: str = "2,5 часа") -> None:
    """Closed before an attempt (contacted by other means, gave up) or by hand."""
    async with db.transaction() as tx:
        job_id = job["id"] if job else None
        if job_id is None:
            row = await (await tx.execute("SELECT id FROM jobs WHERE job_key = ?",
                                          (f"callback:{request_id}",))).fetchone()
            job_id = row[0] if row else None
        await _close(tx, job_id, request_id, outcome, reason, now)
        await _mail_about(tx, request_id, outcome, emails, tz, now, sender, period)


async def _close(tx: Any, job_id: int | None, request_id: int, outcome: str, reason: str, now: float, *,
                 linked_base: str = "") -> None:
    linkedid = ""
    if linked_base:
        row = await (await tx.execute("SELECT linkedid FROM callback_attempts WHERE channel_base = ?",
                                      (linked_base,))).fetchone()
        linkedid = row[0] if row else ""
    await tx.execute(
        "UPDATE callback_requests SET state = 'closed', outcome = ?, closed_ts = ?, call_linkedid = ?"
        " WHERE id = ? AND state = 'open'", (outcome, now, linkedid, request_id))
    if job_id is not None:
        await tx.execute("UPDATE jobs SET state = 'done', outcome = ?, reason = ?, updated_at = ? WHERE id = ?"
                         " AND state <> 'done'", (outcome, reason[:200], tx.stamp(), job_id))


async def _queue_sms(tx: Any, job: dict[str, Any], request_id: int, body: str, now: float) -> None:
    req = await (await tx.execute("SELECT phone, sms_sent FROM callback_requests WHERE id = ?",
                                  (request_id,))).fetchone()
    if req is None or req["sms_sent"]:
        return
    await tx.execute(
        "INSERT INTO outbox (msg_key, job_id, scenario, kind, channel, phone, body, next_try_ts, price, created_ts)"
        " VALUES (?, ?, 'callback', 'callback_sms', ?, ?, ?, ?, ?, ?) ON CONFLICT (msg_key) DO NOTHING",
        (f"callback:{request_id}:sms", job["id"], rules.SMS, req["phone"], body, now,
         rules.price(rules.SMS, "callback", False), now))
    await tx.execute("UPDATE callback_requests SET sms_sent = 1 WHERE id = ?", (request_id,))


async def _mail_about(tx: Any, request_id: int, closed: str, emails: tuple[str, ...], tz: ZoneInfo,
                      now: float, sender: str = "", period: str = "2,5 часа") -> None:
    """Contacted: «Не надо перезванивать»; gave up: «перезвоните пациенту». Other closings
    need no letter: the administrator was there."""
    if closed not in (cr.CLOSED_CONTACTED, cr.CLOSED_GAVE_UP) or not emails:
        return
    req = dict(await (await tx.execute("SELECT * FROM callback_requests WHERE id = ?", (request_id,))).fetchone())
    tries = [dict(r) for r in await (await tx.execute(
        "SELECT * FROM callback_attempts WHERE request_id = ? ORDER BY attempt", (request_id,))).fetchall()]
    subject, body = mail.callback_letter(req, tries, closed, tz, period)
    await mail.enqueue(tx, f"callback:{request_id}:{closed}", request_id, emails, subject, body, now, sender)


async def recover(db: Database, now: float) -> list[str]:
    """After a restart: an attempt left open is closed as interrupted (the request is tried
    again, never the same attempt twice). Returns the channel bases to hang up."""
    async with db.transaction() as tx:
        rows = await (await tx.execute(
            "SELECT a.id, a.job_id, a.channel_base, a.admin_ext FROM callback_attempts a WHERE a.outcome = ''"
        )).fetchall()
        for r in rows:
            await tx.execute("UPDATE callback_attempts SET outcome = ?, leg = 'clinic', ended_ts = ?, reason = ?"
                             " WHERE id = ?", (cr.INTERRUPTED, now, "Звонок прерван перезапуском", r["id"]))
            await jobs.release_in(tx, r["job_id"], now + 60, only_open=True)
        await jobs.requeue_running_in(tx, KIND)
    return [r["channel_base"] for r in rows]


# --- reading ----------------------------------------------------------------------------------
async def list_requests(db: Database, since_ts: float, until_ts: float, state: str = "",
                        limit: int = 500) -> list[dict[str, Any]]:
    where, params = "r.created_ts >= ? AND r.created_ts < ?", [since_ts, until_ts]
    if state in ("open", "closed"):
        where += " AND r.state = ?"
        params.append(state)
    rows = await db.fetchall(
        "SELECT r.*, j.due_ts AS next_ts, j.reason AS waiting, (SELECT COUNT(*) FROM callback_attempts a"
        " WHERE a.request_id = r.id) AS attempts FROM callback_requests r LEFT JOIN jobs j"
        f" ON j.job_key = 'callback:' || r.id WHERE {where} ORDER BY r.created_ts DESC LIMIT ?",
        (*params, limit),
    )
    return [dict(r) for r in rows]


async def attempts(db: Database, request_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in request_ids}
    if not request_ids:
        return out
    marks = ",".join("?" * len(request_ids))
    rows = await db.fetchall(
        "SELECT a.*, c.id AS call_id, c.recording FROM callback_attempts a LEFT JOIN calls c"
        f" ON c.linkedid = a.linkedid AND a.linkedid <> '' WHERE a.request_id IN ({marks})"
        " ORDER BY a.request_id, a.attempt", request_ids)
    for r in rows:
        out[r["request_id"]].append(dict(r))
    return out


async def report_rows(db: Database, since_ts: float, until_ts: float) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT r.created_ts, r.state, r.outcome, r.closed_ts, (SELECT COUNT(*) FROM callback_attempts a"
        " WHERE a.request_id = r.id) AS attempts FROM callback_requests r WHERE r.created_ts >= ?"
        " AND r.created_ts < ? ORDER BY r.created_ts", (since_ts, until_ts))
    return [dict(r) for r in rows]


async def counts(db: Database, since_ts: float, until_ts: float) -> dict[str, int]:
    """The requests' part in the reports: how many came, and how each closed."""
    rows = await db.fetchall(
        "SELECT CASE WHEN state = 'open' THEN 'open' ELSE outcome END AS k, COUNT(*) FROM callback_requests"
        " WHERE created_ts >= ? AND created_ts < ? GROUP BY k", (since_ts, until_ts))
    out = {str(r[0]): int(r[1]) for r in rows}
    out["total"] = sum(out.values())
    return out

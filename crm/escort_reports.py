"""The escort's money and reports: the daily write-off of messages sent, the reports
(«Записи в работе сопровождения», «Объём работы сопровождения», «Списания») and the campaign
view's jobs. Reads and one write-off transaction a day; the decisions are in the rules."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from crm.db import Database
from crm.jobs import job_columns
from crm.rules.escort import CONFIRMATION


def local_midnight(ts: float, tz: ZoneInfo) -> float:
    return datetime.combine(datetime.fromtimestamp(ts, tz).date(), time(0), tz).timestamp()


async def write_off(db: Database, now: float, tz: ZoneInfo) -> int:
    """Once a day: charge the messages sent before today, per day, scenario and channel.
    Each message is charged once (it is marked in the same transaction)."""
    cutoff = local_midnight(now, tz)
    async with db.transaction() as tx:
        rows = await (await tx.execute(
            "SELECT id, scenario, channel, price, sent_ts FROM outbox WHERE state IN ('sent', 'delivered',"
            " 'undelivered') AND written_off_day IS NULL AND sent_ts < ?",
            (cutoff,),
        )).fetchall()
        totals: dict[tuple[str, str, str], list[float]] = {}
        for r in rows:
            day = datetime.fromtimestamp(r["sent_ts"], tz).date().isoformat()
            t = totals.setdefault((day, r["scenario"], r["channel"]), [0, 0.0])
            t[0] += 1
            t[1] += r["price"]
            await tx.execute("UPDATE outbox SET written_off_day = ? WHERE id = ?", (day, r["id"]))
        for (day, scenario, channel), (count, amount) in totals.items():
            await tx.execute(
                "INSERT INTO write_offs (day, scenario, channel, messages, amount, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day, scenario, channel) DO UPDATE SET"
                " messages = write_offs.messages + excluded.messages,"
                " amount = write_offs.amount + excluded.amount",
                (day, scenario, channel, count, amount, tx.stamp()),
            )
    return len(rows)


async def report_write_offs(db: Database, since: str, until: str, scenario: str | None) -> list[dict[str, Any]]:
    where, params = "day >= ? AND day <= ?", [since, until]
    if scenario:
        where += " AND scenario = ?"
        params.append(scenario)
    rows = await db.fetchall(f"SELECT * FROM write_offs WHERE {where} ORDER BY day, scenario, channel", params)
    return [dict(r) for r in rows]


async def report_volume(db: Database, since_ts: float, until_ts: float,
                        scenario: str | None) -> list[dict[str, Any]]:
    """«Объём работы сопровождения»: messages by scenario and channel and state, robot calls
    by outcome, for the period."""
    where, params = "created_ts >= ? AND created_ts < ?", [since_ts, until_ts]
    if scenario:
        where += " AND scenario = ?"
        params.append(scenario)
    msgs = await db.fetchall(
        f"SELECT scenario, channel AS what, state AS outcome, COUNT(*) AS n FROM outbox WHERE {where}"
        " GROUP BY scenario, channel, state ORDER BY scenario, channel, state",
        params,
    )
    out = [dict(r) for r in msgs]
    if scenario in (None, CONFIRMATION):
        calls = await db.fetchall(
            "SELECT 'confirmation' AS scenario, 'robot' AS what, outcome, COUNT(*) AS n FROM robot_calls"
            " WHERE started_ts >= ? AND started_ts < ? GROUP BY outcome ORDER BY outcome",
            (since_ts, until_ts),
        )
        out += [dict(r) for r in calls]
    return out


async def report_appointments(db: Database, since_ts: float, until_ts: float,
                              scenario: str | None) -> dict[str, Any]:
    """«Записи в работе сопровождения»: appointments (by their time) at least one scenario
    acted on, and how they ended."""
    where, params = "a.starts_ts >= ? AND a.starts_ts < ?", [since_ts, until_ts]
    scen = ""
    if scenario:
        scen = " AND l.scenario = ?"
        params.append(scenario)
    rows = await db.fetchall(
        "SELECT a.status, a.needs_reschedule, COUNT(*) AS n FROM appointments a WHERE " + where
        + " AND EXISTS (SELECT 1 FROM escort_log l WHERE l.appointment_id = a.id AND l.what IN"
        " ('call', 'message', 'reply', 'status')" + scen + ") GROUP BY a.status, a.needs_reschedule",
        params,
    )
    by_status: dict[str, int] = {}
    for r in rows:
        key = "reschedule" if r["needs_reschedule"] else r["status"]
        by_status[key] = by_status.get(key, 0) + r["n"]
    return {"total": sum(by_status.values()), "by_status": by_status}


async def campaign(db: Database, since_ts: float, until_ts: float) -> list[dict[str, Any]]:
    """Jobs due in a period (done, skipped or still to run), with the patient, the outcome and
    the reason nothing was sent (the panel's campaign view)."""
    rows = await db.fetchall(
        f"SELECT {job_columns('j.')}, a.starts_at, a.status AS appointment_status, a.needs_reschedule,"
        " p.last_name || ' ' || p.first_name AS patient_name, p.id AS patient_id,"
        " (SELECT COUNT(*) FROM outbox o WHERE o.job_id = j.id AND o.state IN ('sent', 'delivered')) AS sent,"
        " (SELECT GROUP_CONCAT(o.channel || ':' || o.state, ' ') FROM outbox o WHERE o.job_id = j.id) AS messages"
        " FROM jobs j JOIN appointments a ON a.id = j.subject_id AND j.subject_kind = 'appointment'"
        " JOIN patients p ON p.id = a.patient_id WHERE j.due_ts >= ? AND j.due_ts < ?"
        " ORDER BY j.due_ts, a.starts_ts, j.scenario",
        (since_ts, until_ts),
    )
    return [dict(r) for r in rows]

"""Outgoing webhooks' storage (issue #33): the receiver's settings, the events found since the
last pass (each table read after its cursor, so nothing on a call's path writes anything for a
webhook), and the delivery log, each row claimed for one send at a time (a chain's boxes share
it: each event goes out once)."""

from __future__ import annotations

import secrets
from typing import Any

from crm import clinic_settings
from crm.call_listing import get_call
from crm.claim import claim_rows
from crm.db import Database
from crm.rules import webhooks as rules

CONFIG = "mis_webhook"
CURSORS = "mis_webhook_cursors"
OVERLAP = 200  # ids read again each pass: on PostgreSQL a lower id may commit after a higher one
LATE_CLOSE = 300.0  # seconds of closing times read again, likewise
PASS_LIMIT = 500  # events found per source and pass


async def config(db: Database) -> dict[str, Any]:
    stored = await clinic_settings.get(db, CONFIG) or {}
    return {"url": str(stored.get("url", "")), "secret": str(stored.get("secret", "")),
            "events": [e for e in stored.get("events", list(rules.EVENTS)) if e in rules.EVENTS],
            "enabled": bool(stored.get("enabled", False))}


async def save_config(db: Database, url: str, events: list[str], enabled: bool, *, new_secret: bool = False) -> str:
    """Stores the receiver; the secret is made once (or anew when asked). Events start from now:
    switching webhooks on does not send the clinic's whole history."""
    current = await config(db)
    secret = current["secret"] if current["secret"] and not new_secret else "whsec_" + secrets.token_urlsafe(24)
    await clinic_settings.put(db, CONFIG, {"url": url, "secret": secret, "enabled": enabled,
                                           "events": [e for e in events if e in rules.EVENTS]})
    if enabled and (not current["enabled"] or not await clinic_settings.get(db, CURSORS)):
        await clinic_settings.put(db, CURSORS, _start(await _heads(db)))
    return secret


async def _heads(db: Database) -> dict[str, float]:
    row = await db.fetchone(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM calls), (SELECT COALESCE(MAX(id), 0) FROM appointments),"
        " (SELECT COALESCE(MAX(id), 0) FROM escort_log), (SELECT COALESCE(MAX(closed_ts), 0) FROM callback_requests)")
    assert row is not None
    return {"call_finished": float(row[0]), "appointment_booked": float(row[1]), "robot_outcome": float(row[2]),
            "request_closed": float(row[3])}


def _start(heads: dict[str, float]) -> dict[str, float]:
    """Cursors at the heads, and each head kept as a floor the re-read overlap never goes below."""
    return heads | {f"floor:{k}": v for k, v in heads.items()}


# --- finding events ---------------------------------------------------------------------------

async def _new_keys(db: Database, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    known = await db.fetchall(
        f"SELECT event_key FROM webhook_deliveries WHERE event_key IN ({','.join('?' * len(keys))})", keys)
    return set(keys) - {str(r[0]) for r in known}


async def _calls(db: Database, after: float, floor: float) -> list[tuple[str, float, dict[str, Any]]]:
    rows = await db.fetchall("SELECT id, ended_ts FROM calls WHERE id > ? ORDER BY id LIMIT ?",
                             (max(floor, after - OVERLAP), PASS_LIMIT))
    fresh = await _new_keys(db, [f"call_finished:{r[0]}" for r in rows])
    found = []
    for r in rows:
        if f"call_finished:{r[0]}" in fresh and (call := await get_call(db, int(r[0]))) is not None:
            found.append((f"call_finished:{r[0]}", float(r[1] or 0), call))
    return found


async def _bookings(db: Database, after: float, floor: float) -> list[tuple[str, float, dict[str, Any]]]:
    rows = await db.fetchall(
        "SELECT a.id, a.external_id, a.starts_at, a.ends_at, a.status, a.call_linkedid, a.created_ts,"
        " p.id, p.external_id, p.last_name, p.first_name, p.middle_name, d.id, d.external_id, d.full_name,"
        " b.name, c.id FROM appointments a JOIN patients p ON p.id = a.patient_id"
        " JOIN doctors d ON d.id = a.doctor_id LEFT JOIN branches b ON b.id = a.branch_id"
        " LEFT JOIN calls c ON c.linkedid = a.call_linkedid"
        " WHERE a.id > ? AND a.call_linkedid IS NOT NULL AND a.call_linkedid != '' ORDER BY a.id LIMIT ?",
        (max(floor, after - OVERLAP), PASS_LIMIT))
    fresh = await _new_keys(db, [f"appointment_booked:{r[0]}" for r in rows])
    return [(f"appointment_booked:{r[0]}", float(r[6] or 0), {
        "appointment": {"id": r[0], "external_id": r[1], "starts_at": r[2], "ends_at": r[3], "status": r[4],
                        "branch": r[15] or ""},
        "patient": {"id": r[7], "external_id": r[8], "full_name": " ".join(x for x in r[9:12] if x)},
        "doctor": {"id": r[12], "external_id": r[13], "full_name": r[14]},
        "call": {"id": r[16], "linkedid": r[5]},
    }) for r in rows if f"appointment_booked:{r[0]}" in fresh]


async def _robot(db: Database, after: float, floor: float) -> list[tuple[str, float, dict[str, Any]]]:
    rows = await db.fetchall(
        "SELECT l.id, l.ts, l.scenario, l.channel, l.outcome, l.detail, a.id, a.external_id, a.starts_at,"
        " p.external_id FROM escort_log l JOIN appointments a ON a.id = l.appointment_id"
        " JOIN patients p ON p.id = a.patient_id"
        " WHERE l.id > ? AND l.what = 'call' AND l.outcome != '' ORDER BY l.id LIMIT ?",
        (max(floor, after - OVERLAP), PASS_LIMIT))
    fresh = await _new_keys(db, [f"robot_outcome:{r[0]}" for r in rows])
    return [(f"robot_outcome:{r[0]}", float(r[1]), {
        "robot": "confirmation", "scenario": r[2], "channel": r[3], "outcome": r[4], "detail": r[5],
        "appointment": {"id": r[6], "external_id": r[7], "starts_at": r[8]}, "patient": {"external_id": r[9]},
    }) for r in rows if f"robot_outcome:{r[0]}" in fresh]


async def _closed(db: Database, after: float, floor: float) -> list[tuple[str, float, dict[str, Any]]]:
    rows = await db.fetchall(
        "SELECT id, external_id, source_name, phone, patient_id, outcome, closed_ts, call_linkedid FROM"
        " callback_requests WHERE closed_ts IS NOT NULL AND closed_ts > ? ORDER BY closed_ts LIMIT ?",
        (max(floor, after - LATE_CLOSE), PASS_LIMIT))
    keys = [f"request_closed:{r[0]}:{int(r[6])}" for r in rows]
    fresh = await _new_keys(db, keys)
    return [(key, float(r[6]), {"request": {"id": r[0], "external_id": r[1], "source": r[2], "phone": r[3],
                                            "patient_id": r[4], "outcome": r[5], "call_linkedid": r[7]}})
            for key, r in zip(keys, rows, strict=True) if key in fresh]


_SOURCES = {"call_finished": _calls, "appointment_booked": _bookings, "robot_outcome": _robot,
            "request_closed": _closed}


async def collect(db: Database, now: float, cfg: dict[str, Any] | None = None) -> int:
    """New events into the delivery log (the enabled ones); every cursor moves on. Returns how
    many were added. ``cfg``: the receiver's settings when the caller has read them already."""
    cfg = cfg or await config(db)
    if not cfg["enabled"] or not cfg["url"]:
        return 0
    stored = await clinic_settings.get(db, CURSORS)
    cursors = dict(stored or _start(await _heads(db)))
    added = 0
    heads: dict[str, float] | None = None
    for event, source in _SOURCES.items():
        if event not in cfg["events"]:  # not wanted: nothing read, and switched on later it starts then
            heads = heads or await _heads(db)
            cursors[event] = cursors[f"floor:{event}"] = heads[event]
            continue
        found = await source(db, float(cursors.get(event, 0)), float(cursors.get(f"floor:{event}", 0)))
        if not found:
            continue
        async with db.transaction() as tx:
            for key, occurred, data in found:
                cur = await tx.execute(
                    "INSERT INTO webhook_deliveries (event, event_key, payload, created_ts, next_ts)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING",
                    (event, key, rules.envelope(event, key, occurred, data), now, now))
                added += max(0, cur.rowcount or 0)
        cursors[event] = max(float(cursors.get(event, 0)), max(_position(event, key, occ) for key, occ, _ in found))
    if cursors != stored:  # a quiet pass writes nothing
        await clinic_settings.put(db, CURSORS, cursors)
    return added


def _position(event: str, key: str, occurred: float) -> float:
    return occurred if event == "request_closed" else float(key.split(":")[1])


# --- sending ----------------------------------------------------------------------------------

async def claim_due(db: Database, now: float, limit: int = 20) -> list[dict[str, Any]]:
    async with db.transaction() as tx:
        return await claim_rows(tx, "webhook_deliveries", "state = 'pending' AND next_ts <= ?", "next_ts, id", (now,),
                                limit, "state = 'sending', attempts = attempts + 1", (), "id, event, event_key, payload,"
                                " attempts")


async def settle(db: Database, delivery_id: int, attempts: int, status: int | None, error: str, now: float) -> str:
    """A send's result: delivered, tried again later, or given up. Returns the new state."""
    if status is not None and rules.delivered(status):
        state, next_ts = "delivered", now
    else:
        delay = rules.retry_delay(attempts)
        state, next_ts = ("failed", now) if delay is None else ("pending", now + delay)
    async with db.transaction() as tx:
        await tx.execute("UPDATE webhook_deliveries SET state = ?, next_ts = ?, last_status = ?, last_error = ?,"
                         " delivered_ts = ? WHERE id = ?",
                         (state, next_ts, status, error[:300], now if state == "delivered" else None, delivery_id))
    return state


async def resend(db: Database, delivery_id: int, now: float) -> None:
    """«Отправить снова» from the log: a failed (or waiting) delivery goes out at the next pass."""
    async with db.transaction() as tx:
        await tx.execute("UPDATE webhook_deliveries SET state = 'pending', next_ts = ? WHERE id = ?"
                         " AND state IN ('failed', 'pending')", (now, delivery_id))


async def requeue_sending(db: Database) -> None:
    """After a restart: a send cut short goes out again (the receiver dedupes on the event id)."""
    async with db.transaction() as tx:
        await tx.execute("UPDATE webhook_deliveries SET state = 'pending' WHERE state = 'sending'")


async def recent(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT id, event, event_key, created_ts, state, attempts, next_ts, last_status, last_error, delivered_ts"
        " FROM webhook_deliveries ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(r) for r in rows]


async def payload(db: Database, delivery_id: int) -> str | None:
    row = await db.fetchone("SELECT payload FROM webhook_deliveries WHERE id = ?", (delivery_id,))
    return str(row[0]) if row else None

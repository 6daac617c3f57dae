"""Call records in the CRM: written once per finished call (one transaction), read by the
history, the cards, the reports and the JSON API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm import contacts, phones, shifts
from crm import identify as ident
from crm.db import Database
from crm.rules.call_records import OUTGOING_NOT_CONNECTED, CallRecord


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def outside_number(record: CallRecord) -> str:
    """The patient's side of the call: the caller of an incoming call, the callee of an outgoing one."""
    return record.callee if record.direction == "outgoing" else record.caller


async def save_call(db: Database, record: CallRecord) -> int | None:
    """Store a finished call with its legs and caller candidates. Idempotent on linkedid: a
    call already stored (live, or backfilled earlier) is left as it is; returns None then."""
    if await db.fetchone("SELECT 1 FROM calls WHERE linkedid = ?", (record.linkedid,)):
        return None
    e164 = phones.normalize(outside_number(record)) if record.direction != "internal" else None
    who = ident.identify(db, e164)
    branch = None
    if record.did:
        row = await db.fetchone("SELECT branch_id FROM clinic_numbers WHERE did = ?", (record.did,))
        branch = row[0] if row else None
    leg_users = {}
    for leg in record.legs:
        leg_users[leg.uniqueid] = await shifts.user_at(db, leg.endpoint, iso(leg.started_at) or "")
    answered_user = None
    if record.answered_by:
        at = iso(record.answered_at or record.started_at) or ""
        answered_user = await shifts.user_at(db, record.answered_by, at)
    originated_by = int(record.originated_by) if record.originated_by.isdigit() else None
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO calls (linkedid, direction, call_type, did, branch_id, caller_raw,"
            " callee_raw, phone_e164, queue, answered_by_ext, answered_by_user, started_at,"
            " answered_at, ended_at, wait_seconds, talk_seconds, hangup_by, recording,"
            " caller_kind, patient_id, counterpart_id, counts_for_stats, originated_by, source,"
            " created_at, started_ts, ended_ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (linkedid) DO NOTHING",
            (
                record.linkedid, record.direction, record.call_type, record.did, branch,
                record.caller, record.callee, e164, record.queue, record.answered_by,
                answered_user, iso(record.started_at), iso(record.answered_at),
                iso(record.ended_at), record.wait_seconds, record.talk_seconds, record.hangup_by,
                record.recording, who.kind, who.patient_id, who.counterpart_id,
                int(who.counts_for_stats and record.direction != "internal"
                    and record.call_type != OUTGOING_NOT_CONNECTED), originated_by,
                record.source, tx.stamp(), record.started_at, record.ended_at,
            ),
        )
        if cur.rowcount == 0:
            return None
        call_id = int(cur.lastrowid or 0)
        for leg in record.legs:
            await tx.execute(
                "INSERT INTO call_legs (call_id, extension, user_id, outcome, missed, started_at,"
                " answered_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    call_id, leg.endpoint, leg_users[leg.uniqueid], leg.outcome, int(leg.missed),
                    iso(leg.started_at), iso(leg.answered_at), iso(leg.ended_at),
                ),
            )
        for cand in who.candidates:
            await tx.execute(
                "INSERT OR IGNORE INTO call_candidates (call_id, patient_id) VALUES (?, ?)",
                (call_id, cand.id),
            )
        # a comment written while the call was on (the window opens as it rings) may already
        # have typed the caller by hand: apply it now that the call is stored
        typed = await (await tx.execute("SELECT caller_type FROM call_comments WHERE linkedid = ?",
                                        (record.linkedid,))).fetchone()
        if typed is not None:
            await contacts.typed_by_hand(tx, record.linkedid, typed[0])
    return call_id


async def known_linkedids(db: Database, linkedids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(linkedids), 500):
        chunk = linkedids[i : i + 500]
        rows = await db.fetchall(
            f"SELECT linkedid FROM calls WHERE linkedid IN ({','.join('?' * len(chunk))})", chunk
        )
        found.update(r[0] for r in rows)
    return found


async def last_call_end(db: Database, box: str = "") -> str | None:
    """The end of the last call stored, of one chain box (its linkedids start with its name)
    or of every call: where that box's CDR backfill starts after a restart."""
    if box:
        row = await db.fetchone("SELECT MAX(ended_at) FROM calls WHERE linkedid LIKE ?", (f"{box}-%",))
    else:
        row = await db.fetchone("SELECT MAX(ended_at) FROM calls")
    return row[0] if row and row[0] else None


def may_tag(exists: bool, took_part: bool, history: str) -> bool:
    """Who may set a call's tags: the staff member whose phone had the call, or someone with
    the right to edit the history; never on a call that does not exist (yet)."""
    return exists and (took_part or history == "edit")


async def participation(db: Database, linkedid: str, user_id: int) -> tuple[bool, bool]:
    """(the call exists, the user took part: answered, placed it, or a leg rang their phone)."""
    row = await db.fetchone(
        "SELECT c.answered_by_user = ? OR c.originated_by = ? OR EXISTS (SELECT 1 FROM call_legs l"
        " WHERE l.call_id = c.id AND l.user_id = ?) FROM calls c WHERE c.linkedid = ?",
        (user_id, user_id, user_id, linkedid))
    return (row is not None, bool(row and row[0]))


# --- recordings (pbx/workers/recordings.py keeps the files; the record follows each file) -----------
async def recordings_to_compress(db: Database, ended_before: str, limit: int) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT id, recording FROM calls WHERE recording LIKE '%.wav' AND ended_at < ? ORDER BY id LIMIT ?",
        (ended_before, limit))
    return [dict(r) for r in rows]


async def recordings_older_than(db: Database, started_before: str, limit: int) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT id, recording FROM calls WHERE recording <> '' AND started_at < ? ORDER BY id LIMIT ?",
        (started_before, limit))
    return [dict(r) for r in rows]


async def set_recording(db: Database, call_id: int, old: str, new: str) -> bool:
    """Point the call at its new file ("" : none any more), only if it still names ``old``."""
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE calls SET recording = ? WHERE id = ? AND recording = ?", (new, call_id, old))
        return cur.rowcount == 1

"""``init --demo`` (issue #33): the demo clinic loaded through the MIS import, then a past month
of calls of every kind, call-backs after missed calls, bookings made in calls (all in the past),
robot calls, closed callback requests and recordings; once only. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from crm import demo, demo_month
from crm.db import Database
from crm.rules import windows
from pbx.cli.demo_data import PATIENTS, import_demo_export

TZ = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 12, 7, 15, 0, tzinfo=TZ).timestamp()


async def _one(db: Database, sql: str, params: tuple = ()) -> int:
    row = await db.fetchone(sql, params)
    return int(row[0] or 0) if row else 0


async def test_the_demo_month(crm_db: Database, tmp_path: Path) -> None:
    db = crm_db
    added = await demo.load_demo(db, NOW, tz="Europe/Moscow")
    robots_own = await _one(db, "SELECT COUNT(*) FROM appointments WHERE starts_ts > ?", (NOW,))
    await import_demo_export(db, datetime.fromtimestamp(NOW, TZ).date(), "Europe/Moscow")
    assert await _one(db, "SELECT COUNT(*) FROM patients") == added + PATIENTS
    assert await _one(db, "SELECT COUNT(*) FROM import_runs WHERE state = 'done'") == 3
    assert await _one(db, "SELECT COUNT(*) FROM guardianships") > PATIENTS // 10  # the children's mothers

    month = await demo_month.add_month(db, NOW, TZ, tmp_path / "rec", b"RIFF-demo-sound")
    assert month.calls > 400 and month.bookings > 20 and month.robot_calls > 5 and month.requests > 5
    kinds = {str(r[0]): int(r[1]) for r in await db.fetchall("SELECT call_type, COUNT(*) FROM calls GROUP BY call_type")}
    assert {"incoming", "missed", "outgoing", "outgoing_unanswered"} <= kinds.keys()
    assert await _one(db, "SELECT MAX(ended_ts) FROM calls") < NOW
    assert await _one(db, "SELECT MIN(started_ts) FROM calls") >= NOW - 31 * 86400
    # a missed call is mostly called back: an outgoing call to the same number after it
    called_back = await _one(db, "SELECT COUNT(*) FROM calls m WHERE m.call_type = 'missed' AND EXISTS (SELECT 1"
                                 " FROM calls o WHERE o.direction = 'outgoing' AND o.phone_e164 = m.phone_e164"
                                 " AND o.started_ts > m.started_ts)")
    assert called_back > kinds["missed"] // 2
    # transfers: an answered call with a second answering phone
    assert await _one(db, "SELECT COUNT(*) FROM (SELECT call_id FROM call_legs WHERE outcome = 'answered'"
                          " GROUP BY call_id HAVING COUNT(*) > 1) t") > 0
    # bookings made in a call, within the conversion window of it, all visits in the past
    booked = await db.fetchall("SELECT a.starts_ts, a.created_ts, c.ended_ts FROM appointments a JOIN calls c"
                               " ON c.linkedid = a.call_linkedid")
    assert len(booked) == month.bookings
    assert all(r[0] < NOW and abs(r[1] - r[2]) <= windows.APPOINTMENT_LINK for r in booked)
    assert await _one(db, "SELECT COUNT(*) FROM appointments WHERE starts_ts > ?", (NOW,)) == robots_own
    assert await _one(db, "SELECT COUNT(*) FROM callback_requests WHERE state = 'open'") == 0
    assert await _one(db, "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')") == 0  # no robot due
    recorded = [str(r[0]) for r in await db.fetchall("SELECT recording FROM calls WHERE recording != ''")]
    assert len(recorded) == month.recordings > 0
    assert all((tmp_path / "rec" / name).read_bytes() == b"RIFF-demo-sound" for name in recorded)
    again = await demo_month.add_month(db, NOW, TZ, tmp_path / "rec", b"x")
    assert again.calls == 0

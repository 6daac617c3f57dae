"""The one job table: the escort's jobs migrate into it keeping their data (0008), and the
claim hands out each due job once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from crm import jobs
from crm.db import Database, migration_files, split_sql


def database_at(path: Path, version: int) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL)")
    for v, name, sql in migration_files():
        if v <= version:
            for statement in split_sql(sql):
                con.execute(statement)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, '')", (v, name))
    con.close()


async def test_escort_jobs_move_into_the_job_table(tmp_path: Path) -> None:
    path = tmp_path / "crm.sqlite"
    database_at(path, 7)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA foreign_keys=ON")
    con.executescript("""
        INSERT INTO patients (id, last_name, first_name, created_at) VALUES (1, 'П', 'А', '');
        INSERT INTO branches (id, name) VALUES (1, 'B');
        INSERT INTO doctors (id, full_name, specialty, branch_id) VALUES (1, 'Д', 'Т', 1);
        INSERT INTO appointments (id, patient_id, doctor_id, starts_at, ends_at, starts_ts, ends_ts, created_at,
            created_ts, updated_at) VALUES (5, 1, 1, '', '', 2000, 3800, '', 1000, '');
        INSERT INTO escort_jobs (id, job_key, scenario, appointment_id, starts_ts, due_ts, state, step, mode,
            attempts, created_at, updated_at) VALUES
            (11, 'confirmation:5:2000', 'confirmation', 5, 2000, 1500, 'done', 'call', 'robot', 2, 'c', 'u'),
            (12, 'manual:5:1600', 'confirmation', 5, 2000, 1600, 'pending', 'call', 'robot', 0, 'c', 'u');
        INSERT INTO robot_calls (job_id, appointment_id, attempt, channel_id, started_ts, outcome)
            VALUES (11, 5, 1, 'robot-11-1', 1500, 'busy');
        INSERT INTO outbox (msg_key, job_id, appointment_id, scenario, kind, channel, phone, body, next_try_ts,
            created_ts) VALUES ('k1', 11, 5, 'confirmation', 'confirm', 'sms', '+79161234567', 'b', 1600, 1600);
    """)
    con.close()
    db = Database(path)
    await db.open()  # applies 0008 and later
    try:
        rows = [dict(r) for r in await db.fetchall("SELECT * FROM jobs ORDER BY id")]
        assert [(r["id"], r["kind"], r["subject_kind"], r["subject_id"], r["subject_ts"], r["manual"], r["attempts"])
                for r in rows] == [(11, "escort", "appointment", 5, 2000, 0, 2), (12, "escort", "appointment", 5, 2000, 1, 0)]
        assert [tuple(r) for r in await db.fetchall("SELECT job_id, channel_id FROM robot_calls")] == [(11, "robot-11-1")]
        assert [tuple(r) for r in await db.fetchall("SELECT job_id, msg_key FROM outbox")] == [(11, "k1")]
        assert await db.fetchall("PRAGMA foreign_key_check") == []
        assert not await db.fetchall("SELECT name FROM sqlite_master WHERE name = 'escort_jobs'")
        claimed = await jobs.claim_jobs(db, "escort", 1700, 10)
        assert [(j["id"], j["appointment_id"], j["starts_ts"], j["manual"]) for j in claimed] == [(12, 5, 2000, 1)]
        assert await jobs.claim_jobs(db, "escort", 1700, 10) == []  # once
        assert await jobs.claim_jobs(db, "callback", 1700, 10) == []  # another kind's runner sees none
    finally:
        await db.close()


async def test_an_outage_is_one_warning_when_it_starts_and_one_line_when_it_ends(caplog) -> None:
    """#36: during a 30 s outage each box logged a full traceback from the escort and callback
    loops every 2 s; health and alarms were right. Now: one warning, one line at the end with
    the count of passes that waited; a failure nobody expects still gets its traceback."""
    import asyncio
    import logging

    import psycopg

    from pbx.jobs.loop import JobLoop

    class Loop(JobLoop):
        name = "escort"
        outage_errors = (psycopg.OperationalError,)

        def __init__(self) -> None:
            super().__init__(0.01)
            self.passes = 0

        async def work(self) -> None:
            self.passes += 1
            if self.passes <= 5:
                raise psycopg.OperationalError("connection refused")
            if self.passes == 7:
                raise RuntimeError("a bug")

    loop = Loop()
    caplog.set_level(logging.INFO, logger="pbx.jobs.loop")
    loop.start_loop()
    for _ in range(200):
        if loop.passes >= 8:
            break
        await asyncio.sleep(0.01)
    await loop.stop_loop()
    lines = [(r.levelname, r.getMessage(), bool(r.exc_info)) for r in caplog.records if r.name == "pbx.jobs.loop"]
    assert lines[0][:2] == ("WARNING", "escort: the database is unreachable (connection refused); the passes wait for it")
    assert lines[1][0] == "WARNING" and "the database is back after" in lines[1][1] and "5 passes waited" in lines[1][1]
    assert lines[2][1] == "escort: a pass failed" and lines[2][2]  # the unexpected one: with its traceback
    assert len(lines) == 3 and not lines[0][2] and not lines[1][2]

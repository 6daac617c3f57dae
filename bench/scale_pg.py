"""PostgreSQL for ``bench/scale_pages.py --postgresql``: the generated CRM's rows copied into a
throwaway cluster (Debian's PostgreSQL, ``tests/pg_cluster.py``), the same pages served from it
by the same app, and their bare reads run on PostgreSQL, beside the SQLite run.

Only the clinic's own rows are copied (patients, calls and their legs, tags, comments,
appointments, ...); what the server derives from them (the reports' daily aggregates, the stored
days of «История обращений») is computed on PostgreSQL by the server's own code afterwards, as
after an upgrade. The copy uses COPY with the triggers off (``session_replication_role``), then
marks the whole year for the aggregates, as the generator does for SQLite.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg

from crm import dialect

# parents before children; the rows the generator writes
BASE_TABLES = ("branches", "doctors", "users", "clinic_numbers", "patients", "patient_phones", "calls",
               "call_legs", "call_tags", "call_comments", "appointments")


def load(sqlite_path: Path, url: str) -> str:
    """Copy the base rows into ``url`` (its schema already migrated); returns a line to print."""
    t0 = time.perf_counter()
    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    copied = 0
    with psycopg.connect(url) as pg:
        pg.execute("SET session_replication_role = replica")  # no triggers, no FK checks: a bulk load
        for table in reversed(BASE_TABLES):
            pg.execute(f"DELETE FROM {table}")
        for table in BASE_TABLES:
            mine = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            theirs = {r[0] for r in pg.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s", (table,))}
            cols = [c for c in mine if c in theirs]
            with pg.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in src.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                    copy.write_row(row)
                    copied += 1
            if "id" in cols:  # identity columns: the next id after the copied ones
                pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                           f" GREATEST(1, (SELECT COALESCE(MAX(id), 0) FROM {table})))")
        # as an upgrade from before the daily aggregates finds it: one span to compute
        pg.execute("DELETE FROM report_dirty")
        pg.execute("INSERT INTO report_dirty SELECT MIN(started_ts), MAX(started_ts) FROM calls")
        pg.commit()
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("VACUUM ANALYZE")
        size = pg.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
    src.close()
    return f"PostgreSQL: {copied} rows copied in {time.perf_counter() - t0:.0f} s ({size:.0f} MB)"


_connections: dict[str, psycopg.Connection] = {}


def bare(url: str, reads: list[tuple[str, tuple]]) -> float:
    """One pass of the bare reads on PostgreSQL, as ``scale_pages.bare`` (connection kept)."""
    pg = _connections.get(url)
    if pg is None:
        pg = _connections[url] = psycopg.connect(url, autocommit=True)
    t0 = time.perf_counter()
    for sql, params in reads:
        pg.execute(dialect.statement(sql), params).fetchall()
    return time.perf_counter() - t0


def size_mb(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as pg:
        return pg.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20

"""A branch's local copy of what a ringing call needs to know (who owns a number: patients,
guardians, employees, contractors, and the clinic's numbers), for a chain whose CRM is on a
remote PostgreSQL. FastAGI and the live cards read the centre while it answers; while it does
not (a cut link, a restart), they read this copy instead, so a call is still named and routed.

The copy is a SQLite file in the state folder (it outlives a restart of the branch's process),
refreshed from the centre in a background thread; the point lookups are the code's own
statements, in SQLite's dialect, unchanged.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

# the tables crm/identify.py and crm/directory.number_in read, and their indexes
TABLES = ("contact_phones", "employees", "contractors", "patient_phones", "patients", "guardianships",
          "guardians", "clinic_numbers")
INDEXES = ("CREATE INDEX IF NOT EXISTS c_phones ON contact_phones (e164)",
           "CREATE INDEX IF NOT EXISTS p_phones ON patient_phones (e164)",
           "CREATE INDEX IF NOT EXISTS p_ids ON patients (id)",
           "CREATE INDEX IF NOT EXISTS g_ids ON guardianships (guardian_id)",
           "CREATE INDEX IF NOT EXISTS n_dids ON clinic_numbers (did)")


class LocalCopy:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.refreshed_ts: float | None = None  # when the copy last matched the centre
        self._read: sqlite3.Connection | None = None

    def _open(self, **kw: Any) -> sqlite3.Connection:
        target = str(self.path) if self.path is not None else f"file:chain-copy-{id(self)}?mode=memory&cache=shared"
        conn = sqlite3.connect(target, uri=self.path is None, check_same_thread=False, **kw)
        conn.execute("PRAGMA busy_timeout=2000")
        if self.path is not None:
            conn.execute("PRAGMA journal_mode=WAL")
        return conn

    @property
    def is_open(self) -> bool:
        return self._read is not None

    def open(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read = self._open()

    def close(self) -> None:
        if self._read is not None:
            self._read.close()
            self._read = None

    def refresh(self, source: psycopg.Connection[Any], now: float) -> int:
        """Copy the tables from the centre (one snapshot) and swap them in one local
        transaction; runs in a worker thread. Returns the rows copied."""
        rows_in: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        with source.transaction():
            source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            for table in TABLES:
                cur = source.execute(f"SELECT * FROM {table}")  # noqa: S608 - our own table names
                rows_in[table] = ([d.name for d in cur.description or ()], cur.fetchall())
        conn = self._open(isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for table, (names, rows) in rows_in.items():
                conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.execute(f"CREATE TABLE {table} ({', '.join(names)})")
                conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(names))})", rows)
            for index in INDEXES:
                conn.execute(index)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        self.refreshed_ts = now
        return sum(len(rows) for _, rows in rows_in.values())

    def has_copy(self) -> bool:
        try:
            return bool(self._read and self._read.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'patient_phones'").fetchone())
        except sqlite3.Error:
            return False

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """A point lookup on the copy (no copy yet: nothing is known, as for a new number)."""
        if self._read is None or not self.has_copy():
            return []
        return self._read.execute(sql, tuple(params)).fetchall()

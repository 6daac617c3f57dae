"""A branch's durable outbox of finished calls, for a clinic chain whose CRM is a remote
PostgreSQL: every finished call is written here (a local SQLite file in the state folder) before
it is sent to the centre and taken out once saved there, so a branch process stopped while the
centre is unreachable still saves its calls, in order, at its next start. Saving is idempotent on
linkedid: a call both here and backfilled from the CDR is stored once."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crm.rules.call_records import CallRecord, LegRecord


def record_to_json(record: CallRecord) -> str:
    return json.dumps(asdict(record), ensure_ascii=False, separators=(",", ":"))


def record_from_json(text: str) -> CallRecord:
    data: dict[str, Any] = json.loads(text)
    data["legs"] = tuple(LegRecord(**leg) for leg in data["legs"])
    data["linkedids"] = tuple(data.get("linkedids", ()))
    return CallRecord(**data)


class LocalOutbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a call kept here survives a power cut too (NORMAL only a crash of the process)
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, linkedid TEXT NOT NULL UNIQUE,"
                           " record TEXT NOT NULL, received_at REAL)")

    def put(self, record: CallRecord, received_at: float | None) -> None:
        """Keep the call until it is saved (once per linkedid: a retry does not add it again)."""
        self._conn.execute("INSERT OR IGNORE INTO outbox (linkedid, record, received_at) VALUES (?, ?, ?)",
                           (record.linkedid, record_to_json(record), received_at))

    def done(self, linkedid: str) -> None:
        self._conn.execute("DELETE FROM outbox WHERE linkedid = ?", (linkedid,))

    def waiting(self) -> list[tuple[CallRecord, float | None]]:
        """The calls kept, in the order they finished."""
        return [(record_from_json(r[0]), r[1])
                for r in self._conn.execute("SELECT record, received_at FROM outbox ORDER BY seq")]

    def synchronous(self) -> int:
        return int(self._conn.execute("PRAGMA synchronous").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

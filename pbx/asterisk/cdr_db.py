"""Reads Asterisk's CDR database (cdr_sqlite3_custom's master.db) read-only, for backfill."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from crm.rules.call_records import CallRecord, TrackerConfig
from pbx.calls.cdr import record_from_cdr

log = logging.getLogger(__name__)


class CdrReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def rows_since(self, since: float) -> dict[str, list[dict[str, Any]]]:
        """All rows of every call that ended at or after ``since`` (epoch), by linkedid."""
        if not self.path.exists():
            return {}
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error as exc:
            log.warning("CDR database unreadable: %s", exc)
            return {}
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute(
                "SELECT * FROM cdr WHERE linkedid IN"
                " (SELECT linkedid FROM cdr WHERE CAST(end_u AS REAL) >= ?)",
                (since,),
            ).fetchall()
        except sqlite3.Error as exc:  # an older table without our columns
            log.warning("CDR backfill skipped: %s", exc)
            return {}
        finally:
            con.close()
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            grouped[str(row["linkedid"])].append(dict(row))
        return grouped

    async def records_since(self, since: float, config: TrackerConfig) -> list[CallRecord]:
        grouped = await asyncio.to_thread(self.rows_since, since)
        records = []
        for rows in grouped.values():
            record = record_from_cdr(rows, config)
            if record is not None:
                records.append(record)
        records.sort(key=lambda r: r.started_at)
        return records

"""Clinic-wide switches the settings admin changes in the panel (tags, telephony pause,
robot scenarios). Stored as JSON values; read fresh each time so a change applies at once."""

from __future__ import annotations

import json
from typing import Any

from crm.db import Database
from crm.rules.windows import CONVERSION_NEARBY

DEFAULTS: dict[str, Any] = {
    "tags_enabled": False,
    "tags_mode": "no_appointment",  # no_appointment | always
    "telephony_suspended": False,
    "notify_default": False,  # the booking form's «СМС оповещение» ticked by default (seed 001)
    "comment_link_minutes": 5,  # a comment entered by hand joins a call this close (seed 004)
    CONVERSION_NEARBY: False,  # seed 000's conversion only (windows.appointment_converts)
}
# settings the reports' stored days are computed with: a change recomputes every day (crm.call_stats)
REPORT_KEYS = frozenset({CONVERSION_NEARBY})


async def get(db: Database, key: str) -> Any:
    row = await db.fetchone("SELECT value FROM clinic_settings WHERE key = ?", (key,))
    return json.loads(row[0]) if row else DEFAULTS.get(key)


async def get_all(db: Database) -> dict[str, Any]:
    rows = await db.fetchall("SELECT key, value FROM clinic_settings")
    return DEFAULTS | {r[0]: json.loads(r[1]) for r in rows}


async def put(db: Database, key: str, value: Any) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO clinic_settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, ensure_ascii=False)),
        )
        if key in REPORT_KEYS:
            await tx.execute("INSERT INTO report_dirty SELECT MIN(started_ts), MAX(started_ts) FROM calls"
                             " HAVING COUNT(*) > 0")

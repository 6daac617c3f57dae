"""Keeps the reports' daily aggregates fresh in the background (crm.call_stats): a report then
seldom has more than today to recompute, and after an upgrade the days stored before migration
0021 are computed while the server already serves (one day per transaction, calls go on)."""

from __future__ import annotations

import asyncio
import logging
from zoneinfo import ZoneInfo

from crm import call_stats
from crm.db import Database
from pbx.tasks import cancel_and_wait

log = logging.getLogger(__name__)
PASS_SECONDS = 60.0


class ReportRefresher:
    def __init__(self, db: Database, tz: ZoneInfo, every: float = PASS_SECONDS) -> None:
        self.db, self.tz, self.every = db, tz, every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="report-days")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            try:
                days = await call_stats.refresh(self.db, self.tz)
                if days > 1:
                    log.info("report aggregates: %d clinic days recomputed", days)
            except Exception:  # a failing database is the health check's to report; try again later
                log.exception("report aggregates: refresh failed")
            await asyncio.sleep(self.every)

"""Keeps the reports' daily aggregates (crm.call_stats) and «История обращений»'s stored days
(crm.appeal_days, the last WARM_DAYS) fresh in the background: a page then seldom has more than
today to compute, and after an upgrade the old days are computed while the server already
serves (one day per transaction, calls go on). A day is computed in a child process and only
swapped in by the writer (crm.beside, #31)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crm import appeal_days, beside, call_stats
from crm.aio import cancel_and_wait
from crm.db import Database

log = logging.getLogger(__name__)
PASS_SECONDS = 60.0
WARM_DAYS = 400  # a year's «История обращений» and a bit


class ReportRefresher:
    def __init__(self, db: Database, tz: ZoneInfo, every: float = PASS_SECONDS) -> None:
        self.db, self.tz, self.every = db, tz, every
        self._task: asyncio.Task[None] | None = None
        self.computed = {"passes": 0, "report_days": 0, "appeal_days": 0}  # what the passes did: the benches print it

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="report-days")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def run_pass(self) -> None:
        """One pass, computed in a process of its own (crm.beside): the writer only swaps rows.
        A child that cannot start or dies: this pass is computed in the server, as before #31."""
        try:
            async with beside.apart(self.db) as computer:
                await self._pass(computer)
        except (beside.ChildFailed, OSError) as exc:
            log.warning("report aggregates: the pass's own process failed, computed here this time: %s", exc)
            await self._pass(beside.InProcess(self.db))

    async def _pass(self, computer: beside.Computer) -> None:
        days = await call_stats.refresh(self.db, self.tz, computer)
        self.computed["report_days"] += days
        if days > 1:
            log.info("report aggregates: %d clinic days recomputed", days)
        today = datetime.fromtimestamp(self.db.clock.now(), self.tz).date()
        days = await appeal_days.warm(self.db, today - timedelta(days=WARM_DAYS), today, today, self.tz, computer)
        self.computed["appeal_days"] += days
        self.computed["passes"] += 1
        if days > 1:
            log.info("«История обращений»: %d clinic days computed", days)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except Exception:  # a failing database is the health check's to report; try again later
                log.exception("report aggregates: refresh failed")
            await asyncio.sleep(self.every)

"""Background work for the page benches (``bench/scale_pages.py --busy RATE``): what a running
server does while someone opens a page. Calls come through the production AMI path (a fake
Asterisk in a process of its own -> AmiClient -> tracker -> the one writer) at a steady rate,
each starting "now" on the data's clock, and the reports' refresher runs its passes (its work in
a process of its own, crm.beside)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.ami_path import AmiPath, ami_path
from bench.tracker import scenario_calls
from pbx.workers.report_refresher import ReportRefresher

FIRST_LINKEDID = 3_000_000


@contextlib.asynccontextmanager
async def busy(db: Any, tz: ZoneInfo, rate: float, clock_offset: float, cdr: Path,
               every: float = 60.0) -> AsyncIterator[tuple[AmiPath, ReportRefresher] | None]:
    if rate <= 0:
        yield None
        return
    templates = [t for t in scenario_calls() if len(t) > 50]
    refresher = ReportRefresher(db, tz, every)
    async with ami_path(db, cdr, apart=True) as path:
        refresher.start()
        traffic = asyncio.ensure_future(path.send_calls(templates, 10**7, FIRST_LINKEDID, rate, clock_offset))
        try:
            yield path, refresher
        finally:
            await refresher.stop()
            if path.child is not None:  # it would go on sending for days
                path.child.terminate()
                await asyncio.to_thread(path.child.join, 10)
            with contextlib.suppress(EOFError, OSError, AssertionError):
                await traffic

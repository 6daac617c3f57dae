"""A chain's branch started while the centre (PostgreSQL) is unreachable.

The process does not exit (a restart loop would leave the branch's callers unnamed for as long
as the link is down): it keeps trying the centre, and meanwhile FastAGI answers Asterisk's
lookups from the branch's local copy of who owns which number (kept by its last run). Nothing
else starts before the centre answers: the calls of that time are in Asterisk's own CDR, which
the call tracking backfills as soon as it starts (README, "Clinic chain").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

from crm.pg import PgDatabase

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0  # between attempts to reach the centre (tests shorten it)
LOG_EVERY = 12  # attempts between repeated log lines (a minute at 5 s)

Stop = Callable[[], Awaitable[None]]


async def open_when_centre_answers(db: PgDatabase, start_standby: Callable[[], Awaitable[Stop | None]]) -> int:
    """Open ``db``, waiting for the centre if it does not answer; while waiting, the standby
    (FastAGI on the local copy) runs. Returns how many attempts failed."""
    failed = 0
    stop: Stop | None = None
    try:
        while True:
            try:
                await db.open()
                break
            except (psycopg.OperationalError, OSError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if failed % LOG_EVERY == 0:
                    log.error("PostgreSQL unreachable at start (%s): trying again every %.0f s; FastAGI names"
                              " callers from the local copy meanwhile", reason, RETRY_SECONDS)
                if failed == 0:  # the first failure: the copy and the standby, once
                    db.open_copy()
                    stop = await start_standby()
                failed += 1
            await asyncio.sleep(RETRY_SECONDS)
    finally:
        if stop is not None:
            await stop()
    if failed:
        log.warning("PostgreSQL answers after %d failed attempts: starting", failed)
    return failed

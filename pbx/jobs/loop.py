"""The one runner of the job table's services: a service works its due jobs in passes —
``tick()`` every ``robot.tick_seconds``, or at once when woken (a new request, a freed phone) —
and keeps the robot calls it started as tasks, so a stop ends them and a test can wait for
them. What a pass does (claim due jobs of its kind, hand each to its handler) is the service's
``work()``; the claim itself is ``crm.jobs.claim_jobs``, the same for every kind."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from crm.aio import cancel_and_wait

log = logging.getLogger(__name__)


class JobLoop:
    name = "jobs"
    # what the storage raises while it is unreachable (a chain's centre down, a disk gone): an
    # expected outage is one warning when it starts and one line when it ends, no traceback
    # every pass (a service passes its database, whose ``UNREACHABLE`` it is)
    outage_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, tick_seconds: float, db: Any = None) -> None:
        self.tick_seconds = tick_seconds
        if db is not None:  # its storage says what it raises while unreachable
            self.outage_errors = db.UNREACHABLE
        self.calls: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._tick_lock = asyncio.Lock()

    async def work(self) -> None:
        """One pass over the due jobs (the service's own)."""
        raise NotImplementedError

    async def tick(self) -> None:
        async with self._tick_lock:  # a pass at a time: the loop's, a test's, a woken one
            await self.work()

    def start_loop(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop_loop(self) -> None:
        await cancel_and_wait(self._loop_task)
        for task in list(self.calls):
            await cancel_and_wait(task)

    def wake(self) -> None:
        self._wake.set()

    async def idle(self) -> None:
        """Wait for the robot calls under way (tests, the benchmarks)."""
        while self.calls:
            await asyncio.gather(*list(self.calls), return_exceptions=True)

    def spawn(self, call: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(call, name=name)
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)

    async def _run(self) -> None:
        down_since: float | None = None
        waited = 0
        while True:
            try:
                await self.tick()
            except self.outage_errors as exc:
                waited += 1
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("%s: the database is unreachable (%s); the passes wait for it", self.name,
                                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            except Exception:
                log.exception("%s: a pass failed", self.name)
            else:
                if down_since is not None:
                    log.warning("%s: the database is back after %.0f s; %d passes waited", self.name,
                                time.monotonic() - down_since, waited)
                    down_since, waited = None, 0
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

"""Keeps the embedded Asterisk up (issue #31): ``clinic-pbx run`` used to leave a dead Asterisk
dead (health 503 until someone typed ``clinic-pbx asterisk start``). Every ``check`` seconds it
looks for the process; gone, it starts it again (its configuration as it was, the panel's
telephony files included) after ``crm.rules.supervision.restart_delay``. The AMI and ARI clients
reconnect by themselves; the pump's resync then ends, adopts and backfills the calls."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from crm.aio import cancel_and_wait
from crm.rules.supervision import restart_delay
from pbx.asterisk.embedded import AsteriskError, EmbeddedAsterisk

log = logging.getLogger(__name__)


class AsteriskSupervisor:
    def __init__(self, asterisk: EmbeddedAsterisk, *, check: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.asterisk, self.check, self.clock = asterisk, check, clock
        self.restarts: list[float] = []  # when it had to be started again
        self.last_reason = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="asterisk-supervisor")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.check)
            if await asyncio.to_thread(lambda: self.asterisk.running):
                continue
            await self.revive()

    async def revive(self) -> None:
        now = self.clock()
        delay = restart_delay(self.restarts, now)
        self.last_reason = await asyncio.to_thread(self.asterisk.last_words)
        log.error("Asterisk is gone (%s); starting it again in %.0f s", self.last_reason or "no reason logged", delay)
        await asyncio.sleep(delay)
        self.restarts.append(self.clock())
        try:
            pid = await asyncio.to_thread(self.asterisk.start)
        except (AsteriskError, OSError) as exc:
            self.last_reason = f"не запустился: {exc}"[:300]
            log.error("Asterisk did not start again: %s", exc)
            return
        log.warning("Asterisk started again, pid %s (%d restarts in the last 10 min)", pid,
                    sum(1 for t in self.restarts if self.clock() - t < 600))

    def state(self, now: float) -> dict[str, object]:
        """For health and the home page."""
        return {"restarts": len(self.restarts), "restarts_24h": sum(1 for t in self.restarts if now - t < 86400),
                "last_restart": self.restarts[-1] if self.restarts else None, "last_reason": self.last_reason}

"""Outgoing webhooks to the clinic's MIS (issue #33): each pass finds the events since the last
(``crm.webhooks.collect``) and sends the due deliveries, signed like the incoming webhook
(``X-Clinic-Timestamp`` and ``X-Clinic-Signature: sha256=HMAC(secret, timestamp + "." + body)``),
each a POST with a timeout; a receiver that fails gets it again later with back-off."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from crm import webhooks
from crm.clock import Clock
from crm.db import Database
from crm.rules import webhooks as rules
from crm.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from pbx.jobs.loop import JobLoop

log = logging.getLogger(__name__)
TICK_SECONDS = 2.0


class WebhookService(JobLoop):
    name = "webhooks"

    def __init__(self, db: Database, clock: Clock, tick_seconds: float = TICK_SECONDS) -> None:
        super().__init__(tick_seconds, db)
        self.db = db
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def start(self, *, loop: bool = True) -> None:
        await webhooks.requeue_sending(self.db)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=rules.TIMEOUT))
        if loop:
            self.start_loop()

    async def stop(self) -> None:
        await self.stop_loop()
        if self._session is not None:
            await self._session.close()

    async def work(self) -> None:
        cfg = await webhooks.config(self.db)  # read once a pass
        if not cfg["enabled"] or not cfg["url"]:
            return
        await webhooks.collect(self.db, self.clock.now(), cfg)
        due = await webhooks.claim_due(self.db, self.clock.now())
        await asyncio.gather(*(self._send(cfg, d) for d in due))

    async def _send(self, cfg: dict[str, Any], delivery: dict[str, Any]) -> None:
        assert self._session is not None
        body = str(delivery["payload"]).encode()
        stamp = str(int(self.clock.now()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp,
                   SIGNATURE_HEADER: sign(cfg["secret"], stamp, body), "X-Clinic-Event": str(delivery["event"]),
                   "X-Clinic-Delivery": str(delivery["event_key"]), "User-Agent": "clinic-pbx-webhook"}
        status, error = None, ""
        try:
            async with self._session.post(cfg["url"], data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                if not rules.delivered(status):
                    # the start of its answer only: a receiver's error page may be any size
                    error = (await response.content.read(200)).decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        state = await webhooks.settle(self.db, int(delivery["id"]), int(delivery["attempts"]), status, error,
                                      self.clock.now())
        if state != "delivered":
            log.warning("webhook %s to the MIS: %s (attempt %s, now %s)", delivery["event_key"],
                        status or error, delivery["attempts"], state)

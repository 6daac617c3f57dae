"""Call tracking, wired: AMI items -> pure tracker -> CRM writes, live cards, backfill.

``on_ami`` is a sink of the event pump (synchronous, in AMI order). Finished calls go to one
writer task through a queue, so a slow disk never stalls the AMI consumer, and a failed write
is retried rather than lost. After every AMI (re)login the pump awaits ``resync``: live state
from CoreShowChannels, then a backfill from Asterisk's CDR of the calls that ended while we
were not listening (idempotent on linkedid).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from crm import calls as crm_calls
from crm.aio import cancel_and_wait
from crm.db import Database
from crm.local_outbox import LocalOutbox
from crm.rules.call_records import (
    LINK_LOST,
    Anomaly,
    CallFinished,
    CallRecord,
    Change,
    LiveCall,
    LiveUpdate,
    NeedsBackfill,
    QueueWaiting,
    TrackerConfig,
)
from pbx.ami.client import AmiClient, AmiEvent, AmiLink
from pbx.asterisk.cdr_db import CdrReader
from pbx.calls.events import ChannelSnapshot, normalize
from pbx.calls.tracker import CallTracker, endpoint_of

log = logging.getLogger(__name__)

LiveListener = Callable[[Change], None]
BACKFILL_DELAY = 2.0  # seconds: Asterisk writes a call's CDR rows as it ends
BACKFILL_MARGIN = timedelta(minutes=10)


class CallService:
    def __init__(self, db: Database, cdr: CdrReader, config: TrackerConfig | None = None, *,
                 box: str = "", outbox: LocalOutbox | None = None) -> None:
        self.db = db
        self.box = box  # a chain's box: its backfill starts after its own last call
        # a chain's branch: calls the centre could not take are kept on disk until it does
        self.outbox = outbox
        self.cdr = cdr
        self.tracker = CallTracker(config)
        self.config = self.tracker.config
        self.listeners: list[LiveListener] = []
        self.live: dict[str, dict[str, LiveCall]] = {}  # endpoint -> linkedid -> card
        self.waiting: dict[str, int] = {}  # queue -> callers waiting
        self.members: dict[str, set[str]] = {}  # queue -> desk phones that serve it (QueueStatus)
        self.stats = {"records": 0, "backfilled": 0, "anomalies": 0, "write_errors": 0}
        self.link_lost_at: float | None = None
        # calls Asterisk may have died with (#31): linkedid -> what the tracker saw, stored by the
        # next backfill unless the CDR has a row for it
        self.fallbacks: dict[str, CallRecord] = {}
        # set while saving calls fails (database locked by another process, disk full): health,
        # the home page and `check` raise the alarm; the records wait in the queue meanwhile
        self.write_failing_since: float | None = None
        self.last_write_error = ""
        # (record, receive time of the AMI event that finished it; None for backfilled ones)
        self._writes: asyncio.Queue[tuple[CallRecord, float | None]] = asyncio.Queue()
        self.commit_latency: deque[float] = deque(maxlen=10_000)  # seconds, event in -> committed
        self._task: asyncio.Task[None] | None = None
        self._backfills: set[asyncio.Task[None]] = set()
        self.resynced = asyncio.Event()  # set after each resync; tests and health wait on it

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self.outbox is not None:  # what a stop during an outage left: first, in order
            kept = self.outbox.waiting()
            for item in kept:
                self._writes.put_nowait(item)
            if kept:
                log.warning("%d finished calls kept from before the restart: saving them first", len(kept))
        self._task = asyncio.create_task(self._writer(), name="call-writer")

    async def stop(self) -> None:
        for t in list(self._backfills):
            t.cancel()
        if self._task is not None:
            try:
                await self.flush(timeout=5)
            except TimeoutError:
                log.error("shutdown: %d finished calls not written (%s)", self._writes.qsize(),
                          "kept in the local outbox for the next start" if self.outbox is not None
                          else "the CDR backfill will add them at the next start")
            await cancel_and_wait(self._task)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every finished call has been written."""
        await asyncio.wait_for(self._writes.join(), timeout)

    # ---- AMI side -----------------------------------------------------------------------
    def on_ami(self, item: AmiEvent | AmiLink) -> None:
        if isinstance(item, AmiLink):
            if not item.up:
                self.link_lost_at = self.link_lost_at or item.at
                self.tracker.link_down(item.at)
            return
        event = normalize(item.name, item.headers, item.received_at)
        if event is not None:
            self._apply(self.tracker.feed(event), item.received_at)

    def _apply(self, changes: list[Change], received_at: float | None = None) -> None:
        for change in changes:
            if isinstance(change, CallFinished):
                if self.outbox is not None:  # on disk before the first attempt (a chain's branch)
                    self._keep(change.record, received_at)
                self._writes.put_nowait((change.record, received_at))
            elif isinstance(change, LiveUpdate):
                self._update_live(change.call)
            elif isinstance(change, QueueWaiting):
                self.waiting[change.queue] = change.count
            elif isinstance(change, NeedsBackfill):
                if change.fallback is not None:  # stored by the backfill if the CDR has no row for it
                    self.fallbacks[change.linkedid] = change.fallback
                self._schedule_backfill(change.ended_at - 60)
            elif isinstance(change, Anomaly):
                self.stats["anomalies"] += 1
                log.warning("call tracking anomaly (%s): %s", change.linkedid, change.message)
            for listener in self.listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception("live listener failed")

    def _update_live(self, card: LiveCall) -> None:
        cards = self.live.setdefault(card.endpoint, {})
        if card.status == "ended":
            cards.pop(card.linkedid, None)
        else:
            cards[card.linkedid] = card

    async def resync(self, ami: AmiClient) -> None:
        """Called by the pump right after a (re)login, before any further event is read."""
        self.resynced.clear()
        reply: Any = await ami.action({"Action": "CoreShowChannels"}, timeout=10)
        items = reply if isinstance(reply, list) else [reply]
        now = time.time()
        snaps = [
            e for m in items if m.get("Event") == "CoreShowChannel"
            if isinstance(e := normalize("CoreShowChannel", dict(m), now), ChannelSnapshot)
        ]
        log.debug("resync snapshot: %s", [(s.channel, s.state) for s in snaps])
        self._apply(self.tracker.resync(snaps, now))
        try:
            status: Any = await ami.action({"Action": "QueueStatus"}, timeout=10)
            members: dict[str, set[str]] = {}
            for m in status if isinstance(status, list) else [status]:
                if m.get("Event") == "QueueParams":
                    self.waiting[str(m.get("Queue"))] = int(m.get("Calls") or 0)
                elif m.get("Event") == "QueueMember":
                    where = str(m.get("StateInterface") or m.get("Location") or m.get("Interface") or "")
                    members.setdefault(str(m.get("Queue")), set()).add(endpoint_of(where))
            self.members = members
        except (TimeoutError, ConnectionError, ValueError) as exc:
            log.warning("QueueStatus failed: %s", exc)
        since = await self._backfill_since()
        self.link_lost_at = None
        self._schedule_backfill(since, delay=0.0)
        self.resynced.set()
        log.info("call tracking resynced: %d live channels, backfill since %s",
                 len(snaps), datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds"))

    def queues_of(self, extension: str) -> list[str]:
        """The queues a desk phone serves (its «Ещё N на линии» counts only their callers)."""
        return sorted(q for q, phones in self.members.items() if extension in phones)

    async def _backfill_since(self) -> float:
        last = await crm_calls.last_call_end(self.db, self.box)
        if last:
            since = datetime.fromisoformat(last) - BACKFILL_MARGIN
        else:
            since = datetime.fromtimestamp(self.db.clock.now(), UTC) - timedelta(days=1)
        if self.link_lost_at is not None:
            since = min(since, datetime.fromtimestamp(self.link_lost_at, UTC) - BACKFILL_MARGIN)
        return since.timestamp()

    # ---- writing ------------------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            record, received_at = await self._writes.get()
            delay = 0.1
            while True:
                try:
                    if await crm_calls.save_call(self.db, record) is not None:
                        self.stats["records" if record.source == "ami" else "backfilled"] += 1
                        if received_at is not None:
                            self.commit_latency.append(time.time() - received_at)
                    if self.outbox is not None:
                        self._kept(record.linkedid)
                    if self.write_failing_since is not None:
                        log.warning("saving calls works again (%d waiting)", self._writes.qsize())
                    self.write_failing_since = None
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # keep the record and retry: a locked or full disk must not lose a call
                    self.stats["write_errors"] += 1
                    self.write_failing_since = self.write_failing_since or time.time()
                    self.last_write_error = f"{type(exc).__name__}: {exc}"[:200]
                    log.error("saving call %s failed (%s); %d calls waiting, retrying in %.1f s",
                              record.linkedid, self.last_write_error, self._writes.qsize(), delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            self._writes.task_done()

    def _keep(self, record: CallRecord, received_at: float | None) -> None:
        try:
            self.outbox.put(record, received_at)  # type: ignore[union-attr]
        except Exception:  # the local disk: the call is still queued in memory, as without a chain
            log.exception("call %s not kept in the local outbox", record.linkedid)

    def _kept(self, linkedid: str) -> None:
        try:
            self.outbox.done(linkedid)  # type: ignore[union-attr]
        except Exception:  # saved already: a kept copy only costs an idempotent save later
            log.exception("call %s left in the local outbox", linkedid)

    async def settled(self) -> None:
        """Until the backfills under way have run and every queued record is committed (after a
        start or a reconnect the CDR's calls arrive in the CRM a moment later)."""
        while self._backfills:
            await asyncio.gather(*self._backfills, return_exceptions=True)
        await self._writes.join()

    @property
    def pending_writes(self) -> int:
        """Finished calls not yet committed."""
        return self._writes.qsize()

    # ---- backfill -----------------------------------------------------------------------
    def _schedule_backfill(self, since: float, delay: float = BACKFILL_DELAY) -> None:
        task = asyncio.get_running_loop().create_task(self._backfill_later(since, delay))
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)

    async def _backfill_later(self, since: float, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.backfill(since)
        except Exception:
            log.exception("CDR backfill failed")

    async def backfill(self, since: float) -> int:
        """Store every call the CDR has since ``since`` that the CRM does not have yet, except
        the ones still in progress in the tracker. Returns how many were queued."""
        records = await self.cdr.records_since(min([since, *(f.started_at - 60 for f in self.fallbacks.values())]),
                                               self.config)
        fallbacks, self.fallbacks = self.fallbacks, {}
        in_cdr = {lid for r in records for lid in (r.linkedid, *r.linkedids)}
        lost = [f for lid, f in fallbacks.items() if lid not in in_cdr]
        if not records and not lost:
            return 0
        known = await crm_calls.known_linkedids(self.db, [r.linkedid for r in records + lost])
        active = set(self.tracker.conversations)
        queued = 0
        for record in records + lost:
            if record.linkedid in known or record.linkedid in active:
                continue
            if record.source == LINK_LOST:
                log.warning("call %s: Asterisk left no CDR row (it stopped during the call); saved as the"
                            " tracker saw it until the link was lost", record.linkedid)
            self._writes.put_nowait((record, None))
            queued += 1
        if queued:
            log.info("CDR backfill: %d calls", queued)
        return queued

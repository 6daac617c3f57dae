"""Live cards between a clinic chain's processes, over PostgreSQL's LISTEN/NOTIFY.

Each branch's process tracks its own Asterisk's calls; an administrator may sit at branch A's
panel bound to a desk phone of branch B (a call centre). Every card a process builds is also
sent on the shared database's live channel; every process keeps the other boxes' current cards
by desk phone and shows them to the tabs watching that phone, in the order they were sent.

A process that (re)connects to the channel may have missed messages: it asks every process to
send its live cards again, and forgets what it had of theirs meanwhile (a call that ended
while it was away is not sent again). A moment later (``RESYNC_AFTER``, once the others have
answered) every open tab gets a fresh snapshot: a card of a call that ended meanwhile leaves
the panel, one that started meanwhile appears (#36).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from crm.aio import cancel_and_wait
from crm.pg import PgDatabase

if TYPE_CHECKING:
    from web.live import LiveHub

log = logging.getLogger(__name__)
OUTGOING_MAX = 1000  # messages waiting to be sent (the AMI consumer never waits for the database)
RESYNC_AFTER = 1.0  # seconds after a reconnect: the other boxes have sent their live cards again


class LiveBus:
    def __init__(self, hub: LiveHub, db: PgDatabase) -> None:
        self.hub = hub
        self.db = db
        self.origin = uuid.uuid4().hex  # this process: its own messages come back and are skipped
        self._outgoing: asyncio.Queue[str] = asyncio.Queue(OUTGOING_MAX)
        self._task: asyncio.Task[None] | None = None
        self._tabs_resync: asyncio.TimerHandle | None = None
        self._listened = False  # the first connect (at start) has no tab that missed anything

    def start(self) -> None:
        self._task = asyncio.create_task(self._send_loop(), name="live-bus")
        self.db.listen(self.on_message)

    async def stop(self) -> None:
        if self._tabs_resync is not None:
            self._tabs_resync.cancel()
        await cancel_and_wait(self._task)
        self._task = None

    def send(self, message: dict[str, Any]) -> None:
        text = json.dumps({**message, "origin": self.origin}, ensure_ascii=False, separators=(",", ":"))
        try:
            self._outgoing.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("live channel: %d messages waiting; one dropped", OUTGOING_MAX)

    def send_card(self, card: dict[str, Any], branch: int | None) -> None:
        self.send({"type": "card", "card": card, "branch": branch})

    async def _send_loop(self) -> None:
        while True:
            text = await self._outgoing.get()
            delay = 0.2
            while True:
                try:
                    await self.db.notify(text)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the centre unreachable: a live card is worth a retry
                    log.warning("live channel: not sent (%s); retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    def on_message(self, payload: str | None) -> None:
        if payload is None:  # (re)connected: what the others have live now
            self.hub.forget_remote()
            self.send({"type": "resync"})
            if self._listened:  # a reconnect: the tabs may show what ended meanwhile
                if self._tabs_resync is not None:
                    self._tabs_resync.cancel()
                self._tabs_resync = asyncio.get_running_loop().call_later(RESYNC_AFTER, self.hub.resync_tabs)
            self._listened = True
            return
        try:
            message = json.loads(payload)
            if message.get("origin") == self.origin:
                return
            if message.get("type") == "resync":
                self.hub.send_live_cards()
            elif message.get("type") == "card" and isinstance(message.get("card"), dict):
                self.hub.remote_card(message["card"], message.get("branch"))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("live channel: a message ignored (%s): %.200s", exc, payload)

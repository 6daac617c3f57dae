"""The single consumer of the ordered AMI queue.

One task reads ``AmiClient.queue`` and hands each item, in order, to the registered sinks
(the call service). Sinks are plain callables; one that raises is logged and the pump goes on,
so a bad event can never stop call tracking. After every (re)login the pump awaits the
registered resync steps (the call service asks for CoreShowChannels and QueueStatus) before
reading further events, because Asterisk keeps nothing for a client that was away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crm.aio import cancel_and_wait
from pbx.ami.client import AmiClient, AmiEvent, AmiLink

log = logging.getLogger(__name__)

Sink = Callable[[AmiEvent | AmiLink], None]
Resync = Callable[[AmiClient], Awaitable[None]]


@dataclass
class PumpStats:
    events: int = 0
    links_up: int = 0
    links_down: int = 0
    sink_errors: int = 0


class EventPump:
    def __init__(self, ami: AmiClient) -> None:
        self.ami = ami
        self.sinks: list[Sink] = []
        self.resyncs: list[Resync] = []
        self.stats = PumpStats()
        self._task: asyncio.Task[None] | None = None

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def add_resync(self, resync: Resync) -> None:
        self.resyncs.append(resync)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ami-event-pump")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        queue = self.ami.queue
        while True:
            item = await queue.get()
            if isinstance(item, AmiLink):
                if item.up:
                    self.stats.links_up += 1
                    await self._resync()
                else:
                    self.stats.links_down += 1
            else:
                self.stats.events += 1
            for sink in self.sinks:
                try:
                    sink(item)
                except Exception:
                    self.stats.sink_errors += 1
                    log.exception("AMI sink %r failed on %r", sink, item)

    async def _resync(self) -> None:
        for resync in self.resyncs:
            try:
                await resync(self.ami)
            except Exception:
                log.exception("resync step %r failed", resync)

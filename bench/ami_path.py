"""The production path of a call record below Asterisk, for the commit benches: a local fake
AMI server -> AmiClient -> EventPump -> CallService writing into an open database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.tracker import renumber, to_wire
from pbx.ami.client import AmiClient
from pbx.ami.pump import EventPump
from pbx.asterisk.cdr_db import CdrReader
from pbx.workers.calls import CallService
from tests.fake_ami import FakeAmi


class AmiPath:
    def __init__(self, service: CallService, fake: FakeAmi, pump: EventPump) -> None:
        self.service, self.fake, self.pump = service, fake, pump

    async def send_calls(self, templates: list[list[dict[str, object]]], calls: int, first: int,
                         rate: float) -> None:
        """``calls`` recorded calls renumbered from linkedid ``first``, ``rate`` per second."""
        t0 = time.perf_counter()
        for n in range(calls):
            events = renumber(templates[n % len(templates)], first + n, 0.0)
            await self.fake.send(b"".join(to_wire(h) for h in events))
            ahead = (n + 1) / rate - (time.perf_counter() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)


@asynccontextmanager
async def ami_path(db: Any, cdr: Path) -> AsyncIterator[AmiPath]:
    service = CallService(db, CdrReader(cdr))
    service.start()
    fake = FakeAmi()
    await fake.start()
    ami = AmiClient("127.0.0.1", fake.port, "bench", "bench")
    pump = EventPump(ami)
    pump.add_sink(service.on_ami)
    pump.start()
    try:
        assert await ami.start(wait=5)
        yield AmiPath(service, fake, pump)
    finally:
        await ami.stop()
        await pump.stop()
        await service.stop()
        await fake.stop()

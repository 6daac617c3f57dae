"""The production path of a call record below Asterisk, for the commit benches: a local fake
AMI server -> AmiClient -> EventPump -> CallService writing into an open database.

``apart``: the fake AMI server plays Asterisk from a process of its own, as Asterisk is one (in
the bench's process its paced sending shares the event loop and the interpreter's lock with the
server it measures)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.tracker import renumber, to_wire
from pbx.ami.client import AmiClient
from pbx.ami.pump import EventPump
from pbx.asterisk.cdr_db import CdrReader
from pbx.workers.calls import CallService
from tests.fake_ami import FakeAmi

Templates = list[list[dict[str, object]]]


async def paced(fake: FakeAmi, templates: Templates, calls: int, first: int, rate: float,
                clock_offset: float | None = None) -> None:
    """``calls`` recorded calls renumbered from linkedid ``first``, ``rate`` per second; with
    ``clock_offset`` (a data clock minus the real one) each call starts now on that clock."""
    t0 = time.perf_counter()
    for n in range(calls):
        template = templates[n % len(templates)]
        shift = 0.0 if clock_offset is None else time.time() + clock_offset - float(str(template[0]["Timestamp"]))
        events = renumber(template, first + n, shift)
        await fake.send(b"".join(to_wire(h) for h in events))
        ahead = (n + 1) / rate - (time.perf_counter() - t0)
        if ahead > 0:
            await asyncio.sleep(ahead)


class AmiPath:
    def __init__(self, service: CallService, fake: FakeAmi | Connection, pump: EventPump,
                 child: multiprocessing.process.BaseProcess | None = None) -> None:
        self.service, self.fake, self.pump, self.child = service, fake, pump, child

    async def send_calls(self, templates: Templates, calls: int, first: int, rate: float,
                         clock_offset: float | None = None) -> None:
        if isinstance(self.fake, FakeAmi):
            await paced(self.fake, templates, calls, first, rate, clock_offset)
            return
        self.fake.send((templates, calls, first, rate, clock_offset))
        assert await asyncio.to_thread(self.fake.recv) == "sent"


def _asterisk(conn: Connection) -> None:
    """The child: a fake AMI server that sends what it is asked to, paced."""

    async def play() -> None:
        fake = FakeAmi()
        await fake.start()
        conn.send(fake.port)
        while (job := await asyncio.to_thread(conn.recv)) != "stop":
            await paced(fake, *job)
            conn.send("sent")
        await fake.stop()

    asyncio.run(play())


@asynccontextmanager
async def ami_path(db: Any, cdr: Path, *, apart: bool = False) -> AsyncIterator[AmiPath]:
    service = CallService(db, CdrReader(cdr))
    service.start()
    child = None
    if apart:
        spawn = multiprocessing.get_context("spawn")
        conn, theirs = spawn.Pipe()
        child = spawn.Process(target=_asterisk, args=(theirs,), daemon=True)
        child.start()
        theirs.close()  # else a dead child's end stays open here and recv() never sees the end
        fake: FakeAmi | Connection = conn
        port = await asyncio.to_thread(conn.recv)
    else:
        fake = FakeAmi()
        await fake.start()
        port = fake.port
    ami = AmiClient("127.0.0.1", port, "bench", "bench")
    pump = EventPump(ami)
    pump.add_sink(service.on_ami)
    pump.start()
    try:
        assert await ami.start(wait=5)
        yield AmiPath(service, fake, pump, child)
    finally:
        await ami.stop()
        await pump.stop()
        await service.stop()
        if isinstance(fake, FakeAmi):
            await fake.stop()
        elif child is not None and child.is_alive():
            fake.send("stop")
            await asyncio.to_thread(child.join, 10)

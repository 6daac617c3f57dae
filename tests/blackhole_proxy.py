"""A TCP proxy on loopback that can go silent: it keeps the sockets open but stops forwarding,
as a half-open link does (a dead NAT entry, a frozen peer). New connections are forwarded."""

from __future__ import annotations

import asyncio
import contextlib


class BlackholeProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.frozen: set[int] = set()  # ids of the connections that no longer forward
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._live: dict[int, list[asyncio.StreamWriter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze_all(self) -> None:
        """Every connection open now goes silent (nothing is closed)."""
        self.frozen.update(self._live)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writers in self._live.values():
            for w in writers:
                w.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        cid = self.connections
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._live[cid] = [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(cid, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, cid: int, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if cid in self.frozen:
                    continue  # swallowed: the peer never hears of it
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if cid not in self.frozen:
                dst.close()

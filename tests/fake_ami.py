"""A small fake AMI server for adapter tests: banner, Login, Ping, scripted events."""

from __future__ import annotations

import asyncio


class FakeAmi:
    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.answer_pings = True
        self.logins = 0
        self.pings = 0
        self.logged_in = asyncio.Event()

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop_all()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def drop_all(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()
        self.logged_in.clear()

    async def send(self, data: bytes, chunk: int = 0) -> None:
        """Send raw bytes to every client, optionally in chunks of ``chunk`` bytes."""
        for w in self.writers:
            if chunk:
                for i in range(0, len(data), chunk):
                    w.write(data[i : i + chunk])
                    await w.drain()
                    await asyncio.sleep(0)
            else:
                w.write(data)
                await w.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        buf = b""
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                buf += data
                while b"\r\n\r\n" in buf:
                    raw, buf = buf.split(b"\r\n\r\n", 1)
                    headers = dict(
                        line.split(": ", 1) for line in raw.decode().split("\r\n") if ": " in line
                    )
                    self._reply(writer, headers)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if writer in self.writers:
                self.writers.remove(writer)
            writer.close()

    def _reply(self, writer: asyncio.StreamWriter, h: dict[str, str]) -> None:
        action, aid = h.get("Action", "").lower(), h.get("ActionID", "")
        if action == "login":
            self.logins += 1
            writer.write(
                f"Response: Success\r\nActionID: {aid}\r\nMessage: Authentication accepted\r\n\r\n".encode()
            )
            self.logged_in.set()
        elif action == "ping":
            self.pings += 1
            if self.answer_pings:
                writer.write(f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\n\r\n".encode())
        elif action == "coreshowchannels":
            writer.write(
                f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
                f"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n".encode()
            )
        else:
            writer.write(f"Response: Success\r\nActionID: {aid}\r\n\r\n".encode())

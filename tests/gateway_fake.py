"""A local HTTP message gateway (aiohttp) for the escort's tests and benchmark: it records
every message, answers "no account" for chosen numbers per channel, and can fail on demand."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeGateway:
    token: str = "gw-token"
    received: list[dict[str, Any]] = field(default_factory=list)
    no_account: dict[str, set[str]] = field(default_factory=lambda: {"push": set(), "whatsapp": set(), "sms": set()})
    fail_next: int = 0
    runner: web.AppRunner | None = None
    port: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{channel}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def url(self, channel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{channel}"

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        channel = request.match_info["channel"]
        body = await request.json()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": "temporarily down"}, status=503)
        if body["to"] in self.no_account.get(channel, set()):
            return web.json_response({"status": "no_account"}, status=404)
        gid = f"{channel}-{next(self._ids)}"
        self.received.append(body | {"channel": channel, "id": gid})
        return web.json_response({"id": gid, "status": "sent"})

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["to"] == phone]

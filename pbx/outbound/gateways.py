"""Message gateways (push, WhatsApp, SMS) behind one interface. The HTTP gateway posts a JSON
body built from a template to a per-channel URL; the gateway's answer decides: sent (with
its message id, for delivery reports), no account on that channel (the chain moves on), or
a failure (retried by the outbox, then the chain moves on)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from pbx.settings import GatewaySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    status: str  # sent | no_account | failed
    gateway_id: str = ""
    error: str = ""


class Gateway(Protocol):
    async def send(self, channel: str, phone: str, text: str, reference: str) -> SendResult: ...


def render_body(template: str, values: dict[str, str]) -> Any:
    """Fill the JSON template's string values; the message text can never break the JSON."""
    def fill(node: Any) -> Any:
        if isinstance(node, str):
            for key, value in values.items():
                if node == "{" + key + "}":
                    return value
            return node
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        return node

    return fill(json.loads(template))


class HttpGateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.urls = {"push": settings.push_url, "whatsapp": settings.whatsapp_url, "sms": settings.sms_url}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, channel: str, phone: str, text: str, reference: str) -> SendResult:
        url = self.urls.get(channel, "")
        if not url:
            return SendResult("no_account", error="канал не настроен")
        assert self._session is not None, "gateway not started"
        body = render_body(self.settings.body, {"to": phone, "text": text, "reference": reference,
                                                "channel": channel})
        headers = {"Authorization": f"Bearer {self.settings.token}"} if self.settings.token else {}
        try:
            async with self._session.post(url, json=body, headers=headers) as resp:
                try:
                    data = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    data = {}
                data = data if isinstance(data, dict) else {}
                if resp.status in (404, 422) or data.get("status") == "no_account":
                    return SendResult("no_account", error=str(data.get("error", resp.status))[:200])
                if 200 <= resp.status < 300:
                    return SendResult("sent", gateway_id=str(data.get("id", ""))[:100])
                return SendResult("failed", error=f"HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult("failed", error=f"{type(exc).__name__}: {exc}"[:200])


class DemoGateway:
    """``gateway.demo`` (what ``make run`` uses): a stand-in for a provider. Every message
    counts as sent and is written to the server's log; nothing leaves the machine. The
    campaign view and the appointment's log then show the whole chain as a clinic would."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, channel: str, phone: str, text: str, reference: str) -> SendResult:
        log.info("demo gateway, not sent anywhere: %s to %s: %s", channel, phone, text)
        return SendResult("sent", gateway_id=f"demo-{reference}"[:100])


def make_gateway(settings: GatewaySettings) -> HttpGateway | DemoGateway:
    return DemoGateway() if settings.demo else HttpGateway(settings)

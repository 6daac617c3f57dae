"""#36: a chain's live channel down a while, then back: every open tab starts over from a fresh
snapshot, so a card of another box's call that ended meanwhile leaves the panel (before, it
stayed «ringing» until the page was reloaded) and the others' live cards come back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from web import live_bus
from web.live import RESYNC, LiveHub
from web.live_bus import LiveBus


class FakeChannel:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.listener: Any = None

    def listen(self, callback: Any) -> None:
        self.listener = callback

    async def notify(self, text: str) -> None:
        self.sent.append(json.loads(text))


def card(linkedid: str, status: str) -> dict[str, Any]:
    return {"endpoint": "101", "linkedid": linkedid, "status": status, "did": "", "queue": ""}


async def test_after_a_reconnect_every_tab_gets_a_fresh_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_bus, "RESYNC_AFTER", 0.05)
    hub = LiveHub(None)  # type: ignore[arg-type]  # remote cards need no CRM
    channel = FakeChannel()
    bus = LiveBus(hub, channel)  # type: ignore[arg-type]
    hub.bus = bus
    bus.start()
    try:
        channel.listener(None)  # the first connect, at start: nothing missed, no tab disturbed
        tab = hub.subscribe(7, "101")
        other = json.dumps({"origin": "box-2", "type": "card", "card": card("box2-1", "ringing"), "branch": None})
        channel.listener(other)
        assert tab.queue.get_nowait()["card"]["status"] == "ringing"
        # the channel drops; box 2's call ends meanwhile (its "ended" never arrives); back again
        channel.listener(None)
        assert hub.snapshot("101")["cards"] == []  # forgotten at once
        await asyncio.sleep(0.2)
        assert [channel.sent[-1]["type"]] == ["resync"]  # the others are asked for their live cards
        assert tab.queue.get_nowait() is RESYNC and tab.queue.empty()  # the tab starts over
        # box 2's calls still live come back and reach the tab after its snapshot
        tab.overflowed = False  # what the stream does when it sends the snapshot
        channel.listener(json.dumps({"origin": "box-2", "type": "card", "card": card("box2-2", "talking"),
                                     "branch": None}))
        assert [c["linkedid"] for c in hub.snapshot("101")["cards"]] == ["box2-2"]
        assert tab.queue.get_nowait()["card"]["linkedid"] == "box2-2"
    finally:
        await bus.stop()


def test_a_card_built_without_the_crm_keeps_what_it_showed_or_shows_no_number() -> None:
    from crm.rules.call_records import LiveCall
    from web.live import card_without_crm

    fields = {f: "" for f in LiveCall.__dataclass_fields__}
    call = LiveCall(**{**fields, "linkedid": "1.0", "endpoint": "101", "status": "ended", "caller": "79161234567"})
    kept = ({"linkedid": "1.0", "endpoint": "101", "status": "ringing", "display": "Петрова Анна", "phone": "+79161234567",
             "caller": "79161234567"}, 2)
    card, branch = card_without_crm(call, kept)
    assert card["status"] == "ended" and card["display"] == "Петрова Анна" and branch == 2
    bare, branch = card_without_crm(call, None)
    assert bare["status"] == "ended" and bare["phone"] == bare["caller"] == "" and branch is None

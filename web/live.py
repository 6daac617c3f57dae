"""Live call cards for browsers, over Server-Sent Events.

The call service hands its changes over from the AMI consumer, which only queues them; the
hub's own task builds the cards (CRM lookups on the reading thread) and offers them. Every
browser tab gets a bounded queue; a tab whose queue is full is not waited for: its queue is
cleared and it is sent a fresh snapshot instead ("resync").
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from crm import directory, distribution, identify, phones, shifts
from crm.db import Database, Reader
from crm.rules.call_records import Change, LiveCall, LiveUpdate, QueueWaiting, caller_hidden
from pbx.services import SERVICES
from pbx.workers.calls import CallService
from web.live_bus import LiveBus
from web.security import VIEWER, current_user

log = logging.getLogger(__name__)
QUEUE_SIZE = 100
RESYNC = {"type": "resync"}
CLOSED = {"type": "closed"}  # the server is stopping: end the stream now, not at the next keep-alive


@dataclass(eq=False)
class Subscriber:
    user_id: int
    extension: str | None
    rules: tuple[distribution.Rule, ...] = ()
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False

    def restart(self) -> None:
        """Drop what the tab has not read; its stream sends a fresh snapshot next."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(RESYNC)
        self.overflowed = True  # nothing more until the snapshot is taken (it includes it)

    def offer(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.restart()  # a slow tab: drop what it has not read and start over from a snapshot


class LiveHub:
    """The AMI consumer only queues its changes here (``on_change`` never waits); the hub's own
    task (``run``) takes them in order, builds each card with its CRM lookups in one hop to the
    reading thread, keeps the live ones and offers them to the tabs watching that desk phone."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: CallService | None = None
        self.subscribers: set[Subscriber] = set()
        self.changes: asyncio.Queue[Change] = asyncio.Queue()  # unbounded: put_nowait never waits
        # this box's live cards as built (desk phone -> linkedid -> (card, branch)); in a chain
        # the other boxes' too (web/live_bus.py)
        self.local: dict[str, dict[str, tuple[dict[str, Any], int | None]]] = {}
        self.bus: LiveBus | None = None
        self.remote: dict[str, dict[str, tuple[dict[str, Any], int | None]]] = {}

    def attach(self, calls: CallService) -> None:
        self.calls = calls
        calls.listeners.append(self.on_change)

    def subscribe(self, user_id: int, extension: str | None,
                  rules: tuple[distribution.Rule, ...] = ()) -> Subscriber:
        sub = Subscriber(user_id, extension, rules)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def close_all(self) -> None:
        for sub in list(self.subscribers):
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(CLOSED)

    def on_change(self, change: Change) -> None:
        """Runs in the AMI consumer: queued, nothing looked up here."""
        if isinstance(change, LiveUpdate | QueueWaiting):
            self.changes.put_nowait(change)

    async def run(self) -> None:
        """The hub's task: every queued change in order."""
        while True:
            change = await self.changes.get()
            try:
                await self._publish(change)
            except Exception:
                log.exception("live card not published")
            finally:
                self.changes.task_done()

    async def drain(self) -> None:
        """Until every queued change has been published (tests)."""
        await self.changes.join()

    async def _publish(self, change: Change) -> None:
        if isinstance(change, QueueWaiting):
            for sub in list(self.subscribers):
                sub.offer({"type": "waiting", "queue": change.queue, "count": change.count})
            return
        assert isinstance(change, LiveUpdate)
        call = change.call
        cards = self.local.setdefault(call.endpoint, {})
        try:
            card, branch = await self.db.read(lambda r: card_of(r, call))
        except Exception as exc:  # the CRM unreachable (a chain's centre down): the card still moves on
            card, branch = card_without_crm(call, cards.get(call.linkedid))
            log.warning("live card %s built without the CRM (%s)", call.linkedid, type(exc).__name__)
        if call.status == "ended":
            cards.pop(call.linkedid, None)
        else:
            cards[call.linkedid] = (card, branch)
        for sub in list(self.subscribers):
            if sub.extension == call.endpoint and distribution.allowed(sub.rules, call.did, call.queue, branch):
                sub.offer({"type": "card", "card": card})
        if self.bus is not None:
            self.bus.send_card(card, branch)

    def remote_card(self, card: dict[str, Any], branch: int | None) -> None:
        """Another box's card (web/live_bus.py): kept while live, offered to this process's tabs
        watching that desk phone, by the same distribution rules as a local one."""
        endpoint, linkedid = str(card["endpoint"]), str(card["linkedid"])
        cards = self.remote.setdefault(endpoint, {})
        if card.get("status") == "ended":
            cards.pop(linkedid, None)
        else:
            cards[linkedid] = (card, branch)
        for sub in list(self.subscribers):
            if sub.extension == endpoint and distribution.allowed(sub.rules, card.get("did", ""),
                                                                   card.get("queue", ""), branch):
                sub.offer({"type": "card", "card": card})

    def forget_remote(self) -> None:
        self.remote.clear()

    def resync_tabs(self) -> None:
        """Every open tab starts over from a snapshot (the live channel was down: what it shows
        of the other boxes may have ended or begun meanwhile)."""
        for sub in list(self.subscribers):
            sub.restart()

    def send_live_cards(self) -> None:
        """Every live card of this box on the bus again (another process asked: it resyncs)."""
        if self.bus is None:
            return
        for cards in self.local.values():
            for card, branch in cards.values():
                self.bus.send_card(card, branch)

    def notify_user(self, user_id: int, text: str, level: str = "info") -> None:
        for sub in list(self.subscribers):
            if sub.user_id == user_id:
                sub.offer({"type": "notice", "text": text, "level": level})

    def snapshot(self, extension: str | None,
                 rules: tuple[distribution.Rule, ...] = ()) -> dict[str, Any]:
        """The cards as built so far (the hub's task offers every later change to a tab that
        subscribed before asking, so nothing falls between)."""
        kept = [*self.local.get(extension or "", {}).values(), *self.remote.get(extension or "", {}).values()]
        return {
            "type": "snapshot",
            "extension": extension,
            "cards": [card for card, branch in kept
                      if distribution.allowed(rules, card.get("did", ""), card.get("queue", ""), branch)],
            "waiting": dict(self.calls.waiting) if self.calls else {},
            # seed 000: «Ещё N на линии» counts the callers of the queues this phone serves
            "queues": self.calls.queues_of(extension) if self.calls and extension else [],
        }

    async def card(self, call: LiveCall) -> dict[str, Any]:
        """A card with what the CRM knows (one hop to the reading thread)."""
        return (await self.db.read(lambda r: card_of(r, call)))[0]


def card_of(r: Reader, call: LiveCall) -> tuple[dict[str, Any], int | None]:
    """A card with what the CRM knows: patient, candidates, advertising channel, script; and
    the branch of its clinic number (the distribution rules)."""
    data = asdict(call)
    e164 = phones.normalize(call.caller)
    who = identify.identify_in(r.fetch_tuples, e164)
    data["phone"] = e164 or call.caller
    data["kind"] = who.kind
    data["display"] = who.display
    data["guardian_name"] = who.counterpart_name if who.kind == "guardian" else ""
    data["patients"] = [
        {"id": p.id, "full_name": p.full_name, "birth_date": p.birth_date}
        for p in who.candidates
    ]
    number = directory.number_in(r.fetch_tuples, call.did)
    data["ad_channel"], data["script"] = number.ad_channel, number.script
    data["number_hidden"] = caller_hidden(call.direction, number.hide_caller)
    if data["number_hidden"]:  # seed 000: the patient's name, never the number
        data["phone"] = data["caller"] = ""
    return data, number.branch


def card_without_crm(call: LiveCall, kept: tuple[dict[str, Any], int | None] | None,
                     ) -> tuple[dict[str, Any], int | None]:
    """The card when the CRM cannot be read (#36): what the card showed so far with the call's new
    state, so an ended call still leaves every panel; a call never shown before shows no number
    (whether its clinic number hides callers is not known)."""
    if kept is not None:
        card, branch = kept
        return {**card, **{k: v for k, v in asdict(call).items() if k not in ("caller",)}}, branch
    data = asdict(call) | {"phone": "", "caller": "", "kind": "unknown", "display": "", "guardian_name": "",
                           "patients": [], "ad_channel": "", "script": "", "number_hidden": True}
    return data, None


LIVE_HUB = web.AppKey("live_hub", LiveHub)
KEEPALIVE_SECONDS = 15.0  # also how soon a stream notices its session has ended
WORKSTATION_COOKIE = "clinic_pbx_workstation"  # set in the settings: "this computer is ..."


async def live_events(request: web.Request) -> web.StreamResponse:
    """``GET /live``: the SSE stream of the logged-in user's desk phone."""
    session = await get_session(request)
    user_id = int(session["user_id"])
    hub = request.app[LIVE_HUB]
    db = request.app[SERVICES].db
    extension = await shifts.current_extension(db, user_id)
    rules = await distribution.rules_for(db, user_id, request.cookies.get(WORKSTATION_COOKIE))
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    await resp.prepare(request)
    sub = hub.subscribe(user_id, extension, rules)
    try:
        await _send(resp, hub.snapshot(extension, rules))
        while True:
            try:
                message = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                # a session ended elsewhere (logout, deactivation) or idle (nobody at the
                # PC: an open tab alone does not keep it, /presence does) ends the stream
                # within one keep-alive
                request.pop(VIEWER, None)
                if await current_user(request, touch=False) is None:
                    break
                await resp.write(b": keep-alive\n\n")
                continue
            if message is CLOSED:
                break
            if message is RESYNC:
                sub.overflowed = False
                message = hub.snapshot(extension, rules)
            await _send(resp, message)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(sub)
    return resp


async def _send(resp: web.StreamResponse, message: dict[str, Any]) -> None:
    payload = json.dumps(message, ensure_ascii=False)
    await resp.write(f"data: {payload}\n\n".encode())

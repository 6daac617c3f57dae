"""Keeps Asterisk on the panel's telephony and tells how the providers are doing (issue #29).

Every ``tick`` it compares the database's telephony revision with the one this box applied
(a change made on any panel of a chain reaches every box within a tick) and applies a new
one. It reads the providers' state from Asterisk itself: ``PJSIPShowRegistrationsOutbound``
and ``PJSIPShowContacts`` every few seconds, and the reason of a refusal from the AMI
``Registry`` events the pump hands it. Nothing here is shown unless Asterisk said it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from crm import sip_bans
from crm.aio import cancel_and_wait
from crm.rules import sip_guard
from crm.rules.telephony import (
    TrunkStatus,
    dial_number,
    outgoing_provider,
    registration_reasons,
    trunk_status,
)
from crm.storage import AnyDatabase
from pbx.ami.client import AmiEvent, AmiLink
from pbx.asterisk.apply import TelephonyApplier, items_of
from pbx.asterisk.render import LEGACY_TRUNK, sip_uri

log = logging.getLogger(__name__)
DND_FAMILY = "clinic-dnd"  # AstDB: extension -> 1 (the dialplan's *78 / *79 and [from-phones])


class TelephonyWorker:
    def __init__(self, applier: TelephonyApplier, db: AnyDatabase, ami: Any, *, tick: float = 2.0,
                 poll: float = 5.0, clock: Callable[[], float] = time.time, log_path: Path | None = None,
                 guard: sip_guard.GuardPolicy | None = None, own_networks: tuple[str, ...] = ()) -> None:
        self.applier, self.db, self.ami, self.log_path = applier, db, ami, log_path
        self.tick, self.poll, self.clock = tick, poll, clock
        self.registrations: dict[str, str] = {}  # "trunk-N-reg" -> Asterisk's status
        self.contacts: dict[str, str] = {}  # aor -> Reachable / Unreachable / ...
        self.contact_details: dict[str, dict[str, str]] = {}  # aor -> address, User-Agent, status
        self.causes: dict[str, str] = {}  # client URI -> the last refusal's reason
        self.since: dict[str, tuple[str, float]] = {}  # endpoint -> (status code, since)
        self.polled_at: float | None = None
        # SIP scanners (#30): failures per address, the bans the loop is to write
        self.guard_policy = guard or sip_guard.GuardPolicy()
        self.own_networks = own_networks
        self.scans = sip_guard.ScanCounter()
        self.banned: set[str] = set()
        self.to_ban: list[tuple[str, str]] = []
        self.dnd: set[str] = set()  # desk phones on do-not-disturb, as Asterisk's AstDB keeps them
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telephony")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def wake(self) -> None:
        """A change was saved here: apply it now rather than at the next tick."""
        self._wake.set()

    def on_ami(self, item: AmiEvent | AmiLink) -> None:
        """Pump sink: a registration's reason, a SIP scanner's failure. Cheap and never waits
        (a ban is written by the worker's own loop)."""
        if isinstance(item, AmiLink):
            return
        if item.name in sip_guard.FAILURES:
            address = sip_guard.source_address(str(item.headers.get("RemoteAddress") or ""))
            if address not in self.banned and self.scans.failure(address, self.clock(), self.guard()):
                self.banned.add(address)
                self.to_ban.append((address, f"{item.name}: {str(item.headers.get('AccountID') or '')[:40]}"))
                self._wake.set()
            return
        if item.name != "Registry":
            return
        h = item.headers
        who = str(h.get("Username") or "")
        status, cause = str(h.get("Status") or ""), str(h.get("Cause") or "")
        if status.lower() == "registered":
            self.causes.pop(who, None)
        elif cause:  # Asterisk 22 sends none: refresh() reads its log instead
            self.causes[who] = cause

    async def _run(self) -> None:
        last_poll = 0.0
        while True:
            try:
                await self._write_bans()
                if self.ami is not None and self.ami.connected:
                    await self.applier.apply_if_changed()
                    if self.clock() - last_poll >= self.poll:
                        await self.refresh()
                        last_poll = self.clock()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database or AMI outage: try again next tick
                log.warning("telephony tick failed: %s", exc)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick)
            except TimeoutError:
                pass

    def guard(self) -> sip_guard.GuardPolicy:
        """The ban rule with what may never be banned: the box, the clinic's networks, the
        applied providers' addresses."""
        providers = [a for p in self.applier.providers for a in (p.server, *p.addresses)]
        return replace(self.guard_policy, never=sip_guard.never_banned(self.own_networks, providers))

    async def _write_bans(self) -> None:
        while self.to_ban:
            address, reason = self.to_ban[0]
            now = self.clock()
            if await sip_bans.ban(self.db, address, now + self.guard_policy.ban_seconds, reason, now):
                log.warning("SIP scanner %s banned for %.0f s (%s)", address, self.guard_policy.ban_seconds, reason)
            self.to_ban.pop(0)

    async def set_dnd(self, extension: str, on: bool) -> None:
        """Do-not-disturb switched in the panel: AstDB (the dialplan's busy for colleagues, kept
        across restarts, the same key the phone's *78 / *79 set) and the queues' pause."""
        if on:
            await self.ami.action({"Action": "DBPut", "Family": DND_FAMILY, "Key": extension, "Val": "1"}, timeout=10)
        else:
            await self.ami.action({"Action": "DBDel", "Family": DND_FAMILY, "Key": extension}, timeout=10)
        await self.ami.action({"Action": "QueuePause", "Interface": f"PJSIP/{extension}", "Paused": str(on).lower(),
                               "Reason": "DND"}, timeout=10)
        await self.refresh()

    async def _keep_dnd(self) -> None:
        """Read the phones on do-not-disturb and keep them paused in every queue: a queue reload
        or an Asterisk restart brings members back unpaused."""
        dnd = set()
        for m in items_of(await self.ami.action({"Action": "DBGetTree", "Family": DND_FAMILY}, timeout=10)):
            key = str(m.get("Key") or "").rsplit("/", 1)[-1]
            if m.get("Event", "").startswith("DBGet") and key.isdigit():
                dnd.add(key)
        self.dnd = dnd
        if not dnd:
            return
        for m in items_of(await self.ami.action({"Action": "QueueStatus"}, timeout=10)):
            ext = str(m.get("StateInterface") or m.get("Location") or "").partition("/")[2]
            if m.get("Event") == "QueueMember" and ext in dnd and str(m.get("Paused")) == "0":
                await self.ami.action({"Action": "QueuePause", "Interface": f"PJSIP/{ext}", "Queue": m.get("Queue"),
                                       "Paused": "true", "Reason": "DND"}, timeout=10)

    async def refresh(self) -> None:
        active = {b["address"] for b in await sip_bans.active(self.db, self.clock())}
        self.banned &= active  # lifted in the panel or ended: counted afresh
        await self._keep_dnd()
        regs: dict[str, str] = {}
        for m in items_of(await self.ami.action({"Action": "PJSIPShowRegistrationsOutbound"}, timeout=10)):
            if m.get("Event") == "OutboundRegistrationDetail":
                regs[str(m.get("ObjectName"))] = str(m.get("Status") or "")
        contacts: dict[str, str] = {}
        details: dict[str, dict[str, str]] = {}
        for m in items_of(await self.ami.action({"Action": "PJSIPShowContacts"}, timeout=10)):
            if m.get("Event") == "ContactList":
                # "104;@0f3c…": the contact's id starts with its AOR (ours are named as the endpoint)
                aor = str(m.get("Aor") or str(m.get("ObjectName") or "").split(";@")[0])
                contacts[aor] = str(m.get("Status") or "")
                details[aor] = {"status": contacts[aor], "address": f"{m.get('ViaAddr') or ''}",
                                "user_agent": str(m.get("UserAgent") or ""), "uri": str(m.get("Uri") or "")}
        self.registrations, self.contacts, self.polled_at = regs, contacts, self.clock()
        self.contact_details = details
        if self.log_path is not None and any(v.lower() != "registered" for v in regs.values()):
            # AMI says only "Rejected": the provider's answer is in Asterisk's own log
            self.causes.update(registration_reasons(await asyncio.to_thread(_tail, self.log_path)))

    def outgoing_route(self, number: str) -> tuple[str, str]:
        """The endpoint outgoing calls leave by, as applied, and the number as it wants it (what
        the dialplan's clinic-trunk-out says for calls from the phones)."""
        out = outgoing_provider(self.applier.providers)
        if out is None:
            return LEGACY_TRUNK, number
        return out.endpoint, dial_number(number, out.dial_format)

    def statuses(self) -> dict[int, TrunkStatus]:
        """Each applied provider's state as Asterisk last reported it."""
        out: dict[int, TrunkStatus] = {}
        for p in self.applier.providers:
            if not p.enabled:
                continue
            status = trunk_status(p, self.registrations.get(f"{p.endpoint}-reg", ""),
                                  self.causes.get(sip_uri(p, p.login), ""), self.contacts.get(p.endpoint, ""), None)
            code, since = self.since.get(p.endpoint, ("", self.clock()))
            if code != status.code:
                since = self.clock()
                self.since[p.endpoint] = (status.code, since)
            out[p.id] = TrunkStatus(status.code, status.text, since)
        return out


def _tail(path: Path, size: int = 256 * 1024) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - size))
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []

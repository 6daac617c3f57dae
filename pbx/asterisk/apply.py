"""Applies the panel's telephony to the running Asterisk (issue #29): render (pure), write each
file atomically, reload only the modules concerned (``res_pjsip``, the dialplan, ``app_queue``:
calls in progress and registered phones stay), then ask Asterisk whether every object it should now have
exists. Only then is the revision "applied"; otherwise the previous files go back, are reloaded
again, and Asterisk's complaint is kept for the panel."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from crm import sip_bans
from crm import telephony as store
from crm.rules.queues import ClinicQueue
from crm.rules.telephony import SHIPPED_PHONES, BranchOut, ClinicNumber, DeskPhone, Provider, on_box
from crm.storage import AnyDatabase
from pbx.asterisk.render import (
    DIALPLAN_FILE,
    PJSIP_FILE,
    QUEUES_FILE,
    Context,
    expected_objects,
    render_telephony,
)
from pbx.outbound.tts import PromptCache, TtsError

log = logging.getLogger(__name__)
# each file and the reload that reads it again (only the modules concerned: no core reload)
RELOADS = {PJSIP_FILE: "module reload res_pjsip.so", DIALPLAN_FILE: "dialplan reload",
           QUEUES_FILE: "module reload app_queue.so"}


class ApplyError(RuntimeError):
    pass


@dataclass
class ApplyState:
    revision: int = -1  # the revision Asterisk confirmed (-1: none yet in this process)
    applied_at: float | None = None
    error: str = ""  # why the last attempt was refused ("" when it was applied)
    failed_revision: int = -1  # the revision that failed: not retried until it changes
    rendered_on: date | None = None  # the clinic's date the applied files were made on
    bans_end: float | None = None  # the first of the rendered bans ends then: render again


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def items_of(reply: Any) -> list[dict[str, Any]]:
    return [dict(m) for m in (reply if isinstance(reply, list) else [reply])]


@dataclass(frozen=True)
class TelephonyRows:
    """What a box renders of the panel's telephony: a chain's box only its branches' providers,
    numbers and phones (and those of no branch)."""

    providers: list[Provider]
    numbers: list[ClinicNumber]
    phones: list[DeskPhone]  # set up in the panel (a password made)
    queues: tuple[ClinicQueue, ...]
    outs: tuple[BranchOut, ...]
    phone_branches: dict[str, int | None]  # every desk phone, the demo's too
    bans: tuple[str, ...] = ()  # SIP scanners banned now
    bans_end: float | None = None  # when the first of them ends (then the box renders again)

    async def context(self, tz: str, today: date, prompts: PromptCache | None, own_transports: bool = True) -> Context:
        """The clinic's date and the after-hours messages as prompt files (made once each)."""
        messages = {n.closed_message for n in self.numbers if n.closed_message and n.hours}
        if messages and prompts is None:
            raise TtsError("no TTS here")
        sounds = {text: str(await prompts.path(text)) for text in sorted(messages) if prompts is not None}
        return Context(tz=tz, today=today, sounds=sounds, queues=self.queues, outs=self.outs,
                       phone_branches=self.phone_branches, own_transports=own_transports, bans=self.bans)


async def load_rows(db: AnyDatabase, box_branches: tuple[int, ...] = (), now: float = 0.0) -> TelephonyRows:
    every_phone = on_box(await store.desk_phones(db, shipped=True), box_branches)
    bans = await sip_bans.active(db, now)
    return TelephonyRows(on_box(await store.all_providers(db), box_branches),
                         on_box(await store.numbers(db), box_branches), [p for p in every_phone if p.md5_cred],
                         tuple(await store.clinic_queues(db)), tuple(await store.branch_outs(db)),
                         {p.extension: p.branch for p in every_phone}, tuple(b["address"] for b in bans),
                         min((float(b["until_ts"]) for b in bans), default=None))


class TelephonyApplier:
    def __init__(self, etc: Path, db: AnyDatabase, ami: Any, clock: Callable[[], float] = time.time,
                 confirm_timeout: float = 5.0, *, tz: str = "Europe/Moscow", prompts: PromptCache | None = None,
                 box_branches: tuple[int, ...] = (), own_transports: bool = True) -> None:
        self.etc, self.db, self.ami, self.clock = etc, db, ami, clock
        self.box_branches, self.own_transports = box_branches, own_transports
        self.tz, self.prompts = tz, prompts
        self.confirm_timeout = confirm_timeout
        self.state = ApplyState()
        self.providers: list[Provider] = []  # as last applied: the status reader's map
        self._lock = asyncio.Lock()

    @property
    def names(self) -> dict[int, str]:
        return {p.id: p.name for p in self.providers}

    async def apply_if_changed(self) -> ApplyState:
        """A new revision, or a new day (the holidays written are the coming year's)."""
        revision = await store.revision(self.db)
        new_day = self.state.rendered_on is not None and self.state.rendered_on != self._today()
        ban_ended = self.state.bans_end is not None and self.clock() >= self.state.bans_end
        if revision in (self.state.revision, self.state.failed_revision) and not new_day and not ban_ended:
            return self.state
        return await self.apply()

    def _today(self) -> date:
        return datetime.fromtimestamp(self.clock(), ZoneInfo(self.tz)).date()

    async def apply(self) -> ApplyState:
        async with self._lock:
            revision = await store.revision(self.db)
            rows = await load_rows(self.db, self.box_branches, self.clock())
            providers, numbers, phones, queues = rows.providers, rows.numbers, rows.phones, list(rows.queues)
            try:
                ctx = await rows.context(self.tz, self._today(), self.prompts, self.own_transports)
            except TtsError as exc:
                self.state.error, self.state.failed_revision = f"не удалось озвучить сообщение: {exc}", revision
                return self.state
            files = render_telephony(providers, numbers, ctx, phones)
            previous = {n: (self.etc / n).read_text(encoding="utf-8") if (self.etc / n).exists() else None
                        for n in files}
            expected = expected_objects(providers, numbers, phones, queues)
            changed = [n for n in files if files[n] != previous[n]]
            try:
                if not changed and await self._missing(expected):
                    changed = list(files)  # Asterisk lost what its files say (restarted meanwhile)
                for name in changed:
                    write_atomically(self.etc / name, files[name])
                await self._reload(changed)
                await self._confirm(expected)
            except (ApplyError, ConnectionError, TimeoutError, OSError) as exc:
                await self._restore(previous, changed)
                self.state.error, self.state.failed_revision = str(exc) or type(exc).__name__, revision
                log.warning("telephony revision %s not applied: %s", revision, self.state.error)
                return self.state
            self.providers = providers
            self.state = ApplyState(revision, self.clock(), rendered_on=ctx.today, bans_end=rows.bans_end)
            await self._register_now(expected["registrations"])
            log.info("telephony revision %s applied (%d providers)", revision, len(providers))
            return self.state

    async def _reload(self, files: list[str]) -> None:
        for command in (RELOADS[name] for name in files):
            reply = await self.ami.action({"Action": "Command", "Command": command}, timeout=15)
            text = " ".join(str(m.get("Output", "")) + str(m.get("Message", "")) for m in items_of(reply))
            if any(m.get("Response") == "Error" for m in items_of(reply)) or "rror" in text:
                raise ApplyError(f"Asterisk: {command}: {text.strip()[:300]}")

    async def _confirm(self, expected: dict[str, set[str]]) -> None:
        """Every expected endpoint, registration and context exists, and no trunk that should be
        gone is left (reloads are synchronous, the loop only covers a slow box)."""
        deadline = self.clock() + self.confirm_timeout
        while True:
            missing = await self._missing(expected)
            if not missing:
                return
            if self.clock() >= deadline:
                raise ApplyError("Asterisk не подтвердил: " + ", ".join(sorted(missing)[:10]))
            await asyncio.sleep(0.2)

    async def _missing(self, expected: dict[str, set[str]]) -> set[str]:
        endpoints = {str(m.get("ObjectName")) for m in items_of(await self.ami.action(
            {"Action": "PJSIPShowEndpoints"}, timeout=10)) if m.get("Event") == "EndpointList"}
        regs = {str(m.get("ObjectName")) for m in items_of(await self.ami.action(
            {"Action": "PJSIPShowRegistrationsOutbound"}, timeout=10))
            if m.get("Event") == "OutboundRegistrationDetail"}
        missing = (expected["endpoints"] - endpoints) | (expected["registrations"] - regs)
        missing |= {f"удалён не до конца: {e}" for e in endpoints if e not in expected["endpoints"]
                    and (e.startswith("trunk-") or e.isdigit() and e not in SHIPPED_PHONES)}
        if expected["members"] or expected["queues"]:
            status = items_of(await self.ami.action({"Action": "QueueStatus"}, timeout=10))
            members = {f"{m.get('Queue')}/{m.get('StateInterface') or m.get('Location')}" for m in status
                       if m.get("Event") == "QueueMember"}
            queues = {str(m.get("Queue")) for m in status if m.get("Event") == "QueueParams"}
            missing |= (expected["members"] - members) | (expected["queues"] - queues)
        for context in sorted(expected["contexts"]):
            reply = items_of(await self.ami.action({"Action": "ShowDialPlan", "Context": context}, timeout=10))
            if any(m.get("Response") == "Error" for m in reply):
                missing.add(context)
        return missing

    async def _register_now(self, names: set[str]) -> None:
        """A reload leaves an unchanged registration waiting out its retry (60 s after a
        refusal) even when its password just changed: ask for a REGISTER now."""
        if not names:
            return
        for m in items_of(await self.ami.action({"Action": "PJSIPShowRegistrationsOutbound"}, timeout=10)):
            name = str(m.get("ObjectName"))
            if m.get("Event") == "OutboundRegistrationDetail" and name in names \
                    and str(m.get("Status")).lower() != "registered":
                await self.ami.action({"Action": "PJSIPRegister", "Registration": name}, timeout=10)

    async def _restore(self, previous: dict[str, str | None], changed: list[str]) -> None:
        for name in changed:
            if previous[name] is not None:
                write_atomically(self.etc / name, str(previous[name]))
        try:
            await self._reload(changed)
        except (ApplyError, ConnectionError, TimeoutError) as exc:
            log.error("restoring the previous telephony failed too: %s", exc)

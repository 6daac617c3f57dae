"""The one ARI flow runner: carries out any robot flow's commands (``pbx.robots.flow``) and feeds
it the facts of its channels. The adapter; the flows themselves are pure.

One task reads the ARI event queue and routes each event to the flow that owns the channel (or
the playback). A channel is registered before it is originated, so no event can
come for an unknown call; a Stasis channel nobody owns (left from before a restart) is hung up.
Timers run on the event loop and come back as ``TimerDue`` facts. When a flow gives its
``Outcome``, whatever of its channels is still up is hung up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from crm.aio import cancel_and_wait
from pbx.ari.client import AriClient, AriError, AriEvent, AriLink
from pbx.robots import flow as f

log = logging.getLogger(__name__)
ORIGINATE_TIMEOUT = 15.0  # a loaded Asterisk can take seconds to set a call up
SILENCE = "__originate_silence__"  # the runner's own timer for an originate whose answer never came
OnReport = Callable[[str], Awaitable[None]]


@dataclass
class _Running:
    flow: f.Flow
    facts: asyncio.Queue[f.Fact] = field(default_factory=asyncio.Queue)
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)  # originated and not destroyed yet
    silent: dict[str, str] = field(default_factory=dict)  # SILENCE timer name -> channel
    followed: set[str] = field(default_factory=set)  # channels followed out of Stasis (Continue)


class FlowRunner:
    def __init__(self, ari: AriClient, app: str) -> None:
        self.ari = ari
        self.app = app
        self.owners: dict[str, _Running] = {}  # channel id -> its flow
        self.playbacks: dict[str, str] = {}  # playback id -> channel id
        self._task: asyncio.Task[None] | None = None
        self._link_lost = False
        self._checks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._route(), name="robot-flows")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for task in list(self._checks):
            await cancel_and_wait(task)

    @property
    def active(self) -> int:
        return len({id(r) for r in self.owners.values()})

    async def run(self, flow: f.Flow, on_report: OnReport | None = None) -> f.Outcome:
        """Run a flow to its outcome. An ARI failure is a fact the flow decides on; this never
        raises for what the called people do."""
        r = _Running(flow)
        try:
            outcome = await self._execute(r, flow.start(), on_report)
            while outcome is None:
                outcome = await self._execute(r, flow.feed(await r.facts.get()), on_report)
            return outcome
        finally:
            for handle in r.timers.values():
                handle.cancel()
            for channel in list(r.channels):
                await self.hangup(channel)
            for channel in r.followed:
                self.ari.subscriptions.discard(f"channel:{channel}")
                await self._quiet(self.ari.delete(f"applications/{self.app}/subscription",
                                                  eventSource=f"channel:{channel}"))
            for channel in [c for c, owner in self.owners.items() if owner is r]:
                self.owners.pop(channel, None)
            for pid in [p for p, c in self.playbacks.items() if c not in self.owners]:
                self.playbacks.pop(pid, None)

    async def hangup(self, channel: str) -> None:
        await self._quiet(self.ari.delete(f"channels/{channel}"))

    # ---- commands ---------------------------------------------------------------------------
    async def _execute(self, r: _Running, commands: list[f.Command], on_report: OnReport | None) -> f.Outcome | None:
        for cmd in commands:
            if isinstance(cmd, f.Outcome):
                return cmd
            if isinstance(cmd, f.Originate):
                await self._originate(r, cmd)
            elif isinstance(cmd, f.Play):
                self.playbacks[cmd.playback] = cmd.channel
                try:
                    await self.ari.post(f"channels/{cmd.channel}/play", media=cmd.media, playbackId=cmd.playback)
                except AriError as exc:  # the channel is gone: its hang-up event follows
                    log.info("robot: play on %s: %s", cmd.channel, exc)
                except (TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
                    # Asterisk went away under the call (killed, restarted): the link's loss and
                    # the channel's vanishing decide the outcome, not a failed prompt
                    log.warning("robot: play on %s: Asterisk unreachable: %s", cmd.channel, exc or type(exc).__name__)
            elif isinstance(cmd, f.StopPlayback):
                await self._quiet(self.ari.delete(f"playbacks/{cmd.playback}"))  # 404: it had ended
            elif isinstance(cmd, f.StartTimer):
                self._timer(r, cmd.name, cmd.seconds, lambda name=cmd.name: f.TimerDue(name, time.time()))
            elif isinstance(cmd, f.CancelTimer):
                handle = r.timers.pop(cmd.name, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(cmd, f.Continue):
                await self._continue(r, cmd)
            elif isinstance(cmd, f.Hangup):
                await self.hangup(cmd.channel)
            elif isinstance(cmd, f.Report) and on_report is not None:
                await on_report(cmd.what)
        return None

    def _timer(self, r: _Running, name: str, seconds: float, fact: Callable[[], f.Fact]) -> None:
        old = r.timers.pop(name, None)
        if old is not None:
            old.cancel()
        r.timers[name] = asyncio.get_running_loop().call_later(seconds, lambda: r.facts.put_nowait(fact()))

    async def _originate(self, r: _Running, cmd: f.Originate) -> None:
        params: dict[str, Any] = {"endpoint": cmd.endpoint, "channelId": cmd.channel, "timeout": cmd.ring_seconds}
        if cmd.caller_id:
            params["callerId"] = cmd.caller_id
        if cmd.amd:  # a dialplan originate: AMD first, then Stasis with HUMAN or MACHINE
            params.update(context="clinic-robot-amd", extension="s", priority=1)
        else:
            params.update(app=self.app, appArgs="robot,HUMAN")
        body = {"variables": dict(cmd.variables)} if cmd.variables else None
        self.owners[cmd.channel] = r
        r.channels.add(cmd.channel)
        try:
            await self.ari.request("POST", "channels", params=params, json_body=body, timeout=ORIGINATE_TIMEOUT)
            if cmd.amd:  # follow the channel before it reaches Stasis
                await self.ari.post(f"applications/{self.app}/subscription", eventSource=f"channel:{cmd.channel}")
        except TimeoutError:
            log.warning("robot: originate to %s timed out; waiting for its events", cmd.endpoint)
            name = f"{SILENCE}{cmd.channel}"
            r.silent[name] = cmd.channel
            self._timer(r, name, cmd.ring_seconds + ORIGINATE_TIMEOUT, lambda: f.OriginateFailed(
                cmd.channel, "нет событий звонка от Asterisk", time.time(), placed=True))
        except AriError as exc:
            log.warning("robot: originate to %s refused: %s", cmd.endpoint, exc)
            self._gone(r, cmd.channel)
            r.facts.put_nowait(f.OriginateFailed(cmd.channel, f"Asterisk: {exc.message}", time.time()))
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.warning("robot: originate to %s failed: %s", cmd.endpoint, exc)
            self._gone(r, cmd.channel)
            r.facts.put_nowait(f.OriginateFailed(cmd.channel, f"ARI недоступен: {exc or type(exc).__name__}",
                                                 time.time()))

    async def _continue(self, r: _Running, cmd: f.Continue) -> None:
        """Into the dialplan, still followed: the subscription (renewed after a reconnect)
        outlives the channel's Stasis, so its Dial and hang-up events keep coming."""
        try:
            await self.ari.subscribe(f"channel:{cmd.channel}")
            r.followed.add(cmd.channel)
            for name, value in cmd.variables:
                await self.ari.post(f"channels/{cmd.channel}/variable", variable=name, value=value)
            await self.ari.post(f"channels/{cmd.channel}/continue", context=cmd.context,
                                extension=cmd.extension, priority=1)
        except AriError as exc:  # the channel is gone: its hang-up event follows
            log.info("robot: continue %s: %s", cmd.channel, exc)
        except (TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            log.warning("robot: continue %s failed: %s; hanging up", cmd.channel, exc)
            await self.hangup(cmd.channel)

    def _gone(self, r: _Running, channel: str) -> None:
        r.channels.discard(channel)

    @staticmethod
    async def _quiet(request: Awaitable[Any]) -> None:
        try:
            await request
        except (AriError, TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            log.debug("robot: %s", exc)

    # ---- events -> facts --------------------------------------------------------------------
    async def _route(self) -> None:
        while True:
            item = await self.ari.events.get()
            if isinstance(item, AriLink):
                if not item.up:
                    self._link_lost = True
                elif self._link_lost:  # back: which of our channels ended meanwhile?
                    self._link_lost = False
                    task = asyncio.get_running_loop().create_task(self._recheck(), name="robot-recheck")
                    self._checks.add(task)
                    task.add_done_callback(self._checks.discard)
                continue
            try:
                self._dispatch(item)
            except Exception:
                log.exception("robot: bad ARI event %.200r", item)

    async def _recheck(self) -> None:
        """After a reconnect: a channel Asterisk no longer has ended unseen (its events were
        lost with the link, or Asterisk restarted): its flow is told, so no call waits for an
        event that will never come."""
        for channel, r in list(self.owners.items()):
            if channel not in r.channels:
                continue
            try:
                await self.ari.get(f"channels/{channel}")
            except AriError as exc:
                if exc.status == 404 and channel in r.channels:
                    log.warning("robot: channel %s ended while the link to Asterisk was down", channel)
                    self._gone(r, channel)
                    r.facts.put_nowait(f.Vanished(channel, time.time()))
            except (TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
                log.info("robot: cannot look at channel %s after the reconnect: %s", channel, exc)

    def _dispatch(self, event: AriEvent) -> None:
        data, at = event.data, event.received_at
        channel = str((data.get("channel") or data.get("caller") or {}).get("id", ""))
        if not channel and "playback" in data:
            target = str(data["playback"].get("target_uri", ""))
            channel = self.playbacks.get(str(data["playback"].get("id", "")), target.partition(":")[2])
        r = self.owners.get(channel)
        if r is None:
            if event.type == "StasisStart" and channel:
                log.warning("robot: hanging up channel %s nobody owns", channel)
                asyncio.get_running_loop().create_task(self.hangup(channel))
            return
        for name in [n for n, c in r.silent.items() if c == channel]:  # its events do come
            r.silent.pop(name, None)
            handle = r.timers.pop(name, None)
            if handle is not None:
                handle.cancel()
        fact = self._fact(event.type, data, channel, at)
        if fact is not None:
            if isinstance(fact, f.HungUp) and fact.final:
                self._gone(r, channel)
            r.facts.put_nowait(fact)

    @staticmethod
    def _fact(kind: str, data: dict[str, Any], channel: str, at: float) -> f.Fact | None:
        if kind == "StasisStart":
            args = data.get("args") or []
            return f.Answered(channel, at, machine=len(args) > 1 and args[1] == "MACHINE")
        if kind == "ChannelDtmfReceived":
            return f.Key(channel, str(data.get("digit", ""))[:1], at)
        if kind == "PlaybackFinished":
            return f.PromptDone(channel, str(data["playback"].get("id", "")), at)
        if kind in ("ChannelDestroyed", "StasisEnd", "ChannelHangupRequest"):
            try:
                cause = int(data.get("cause", 0) or 0)
            except (TypeError, ValueError):
                cause = 0
            return f.HungUp(channel, cause, at, final=kind == "ChannelDestroyed")
        if kind == "Dial":
            status = str(data.get("dialstatus", ""))
            if status in ("", "RINGING", "PROGRESS", "PROCEEDING", "PROCEED"):
                return None
            return f.Dialled(channel, status, at)
        return None

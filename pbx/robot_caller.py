"""The confirmation robot's ARI side: places one call, plays the prompts, feeds the pure IVR
(``pbx.robots.ivr``) with the channel's events and carries out its commands.

One task reads the ARI event queue and routes each event to the call that owns the channel
(or the playback). A call is registered before it is originated, so no event can arrive
for an unknown call. A Stasis channel nobody owns (left from before a restart) is hung up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pbx.ari.client import AriClient, AriError, AriEvent, AriLink
from pbx.calls import q850
from pbx.robots import ivr
from pbx.settings import Settings
from pbx.tasks import cancel_and_wait
from pbx.tts import PromptCache, render_phrases

log = logging.getLogger(__name__)
MAX_CALL_SECONDS = 300.0
ORIGINATE_TIMEOUT = 15.0  # a loaded Asterisk can take seconds to set a call up


@dataclass(frozen=True)
class CallResult:
    # confirmed | reschedule | cancelled | no_key | hangup | no_answer | busy | machine | failed
    # | not_started (Asterisk refused the call: the patient was never dialled)
    outcome: str
    keys: str = ""
    answered_at: float | None = None
    reason: str = ""  # why a call failed or never started, for the escort's log


@dataclass
class _Call:
    channel_id: str
    queue: asyncio.Queue[AriEvent]


class RobotCaller:
    def __init__(self, ari: AriClient, settings: Settings, prompts: PromptCache,
                 phrases: dict[str, str]) -> None:
        self.ari = ari
        self.settings = settings
        self.prompts = prompts
        self.phrase_texts = phrases
        self.phrases: dict[str, Path] = {}
        self.calls: dict[str, _Call] = {}
        self.playbacks: dict[str, str] = {}  # playback id -> channel id
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._route(), name="robot-events")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    @property
    def active(self) -> int:
        return len(self.calls)

    async def _route(self) -> None:
        while True:
            item = await self.ari.events.get()
            if isinstance(item, AriLink):
                continue
            try:
                self._dispatch(item)
            except Exception:
                log.exception("robot: bad ARI event %.200r", item)

    def _dispatch(self, event: AriEvent) -> None:
        data = event.data
        channel_id = str((data.get("channel") or {}).get("id", ""))
        if not channel_id and "playback" in data:
            target = str(data["playback"].get("target_uri", ""))
            channel_id = self.playbacks.get(str(data["playback"].get("id", "")), target.partition(":")[2])
        call = self.calls.get(channel_id)
        if call is not None:
            call.queue.put_nowait(event)
        elif event.type == "StasisStart" and channel_id:
            log.warning("robot: hanging up channel %s nobody owns", channel_id)
            asyncio.get_running_loop().create_task(self._hangup(channel_id))

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self.ari.delete(f"channels/{channel_id}")
        except (AriError, TimeoutError, ConnectionError) as exc:
            log.debug("robot: hangup %s: %s", channel_id, exc)

    async def hangup_leftovers(self, channel_ids: list[str]) -> None:
        for channel_id in channel_ids:
            await self._hangup(channel_id)

    async def call(self, number: str, greeting: Path, channel_id: str, *, caller_id: str = "",
                   amd: bool = False, on_decided: Callable[[str], Awaitable[None]] | None = None) -> CallResult:
        """Call the patient and run the menu; returns the outcome. Never raises for the
        patient's behaviour; an ARI failure is the outcome ``failed``."""
        r = self.settings.robot
        if not self.phrases:
            self.phrases = await render_phrases(self.prompts, self.phrase_texts)
        call = _Call(channel_id, asyncio.Queue())
        self.calls[channel_id] = call
        try:
            return await asyncio.wait_for(
                self._run(call, number, greeting, caller_id, amd, on_decided, r.ring_seconds), MAX_CALL_SECONDS
            )
        except TimeoutError:
            await self._hangup(channel_id)
            return CallResult("failed", reason=f"звонок дольше {MAX_CALL_SECONDS:.0f} с")
        finally:
            self.calls.pop(channel_id, None)
            for pid in [p for p, c in self.playbacks.items() if c == channel_id]:
                self.playbacks.pop(pid, None)

    async def _run(self, call: _Call, number: str, greeting: Path, caller_id: str, amd: bool,
                   on_decided: Callable[[str], Awaitable[None]] | None, ring_seconds: int) -> CallResult:
        a, r = self.settings.asterisk, self.settings.robot
        endpoint = r.dial.format(number=number.lstrip("+"))
        params: dict[str, Any] = {"endpoint": endpoint, "channelId": call.channel_id, "timeout": ring_seconds}
        if caller_id:
            params["callerId"] = caller_id
        if amd:
            params.update(context="clinic-robot-amd", extension="s", priority=1)
        else:
            params.update(app=a.ari_app, appArgs="robot,HUMAN")
        uncertain = False  # the originate request timed out: the call may exist all the same
        try:
            await self.ari.request("POST", "channels", params=params, timeout=ORIGINATE_TIMEOUT)
            if amd:  # a dialplan originate: follow the channel before it reaches Stasis
                await self.ari.post(f"applications/{a.ari_app}/subscription", eventSource=f"channel:{call.channel_id}")
        except TimeoutError:
            log.warning("robot: originate to %s timed out; waiting for its events", endpoint)
            uncertain = True
        except AriError as exc:
            log.warning("robot: originate to %s refused: %s", endpoint, exc)
            return CallResult("not_started", reason=f"Asterisk: {exc.message}"[:200])
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.warning("robot: originate to %s failed: %s", endpoint, exc)
            return CallResult("not_started", reason=f"ARI недоступен: {exc or type(exc).__name__}"[:200])
        machine = ivr.ConfirmationIvr(max_errors=r.max_errors, input_timeout=r.input_timeout)
        timer: asyncio.TimerHandle | None = None
        playing: str | None = None
        answered_at: float | None = None
        decided = False
        loop = asyncio.get_running_loop()
        while True:
            if uncertain:
                try:
                    event = await asyncio.wait_for(call.queue.get(), ring_seconds + ORIGINATE_TIMEOUT)
                except TimeoutError:
                    await self._hangup(call.channel_id)
                    return CallResult("failed", reason="нет событий звонка от Asterisk")
                uncertain = False
            else:
                event = await call.queue.get()
            kind, data, at = event.type, event.data, event.received_at
            feed: ivr.Event | None = None
            if kind == "StasisStart":
                args = data.get("args") or []
                if answered_at is not None:
                    continue
                answered_at = at
                if len(args) > 1 and args[1] == "MACHINE":
                    await self._hangup(call.channel_id)
                    return CallResult("machine", "", answered_at)
                feed = ivr.Answered(at)
            elif kind == "ChannelDtmfReceived":
                feed = ivr.Key(str(data.get("digit", "")), at)
            elif kind == "PlaybackFinished":
                pid = str(data["playback"].get("id", ""))
                if pid == playing:
                    playing = None
                seq = pid.rsplit("-", 1)[-1]
                feed = ivr.PromptDone(int(seq) if seq.isdigit() else -1, at)
            elif kind == "NoInput":
                feed = ivr.NoInput(at)
            elif kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
                if answered_at is None:
                    if kind != "ChannelDestroyed":
                        continue
                    cause = int(data.get("cause", 0) or 0)
                    log.info("robot: %s not answered: cause %s", call.channel_id, cause)
                    return CallResult(q850.robot_outcome(cause))
                feed = ivr.HungUp(at)
            if feed is None:
                continue
            for cmd in machine.feed(feed):
                if isinstance(cmd, ivr.Play):
                    media = greeting if cmd.prompt == "main" else self.phrases[cmd.prompt]
                    pid = f"{call.channel_id}-pb-{cmd.seq}"
                    self.playbacks[pid] = call.channel_id
                    playing = pid
                    try:
                        await self.ari.post(f"channels/{call.channel_id}/play", media=f"sound:{media}", playbackId=pid)
                    except AriError as exc:  # the channel is gone: its hang-up event follows
                        log.info("robot: play on %s: %s", call.channel_id, exc)
                elif isinstance(cmd, ivr.StopPlayback) and playing:
                    stopped, playing = playing, None
                    try:
                        await self.ari.delete(f"playbacks/{stopped}")
                    except AriError:
                        pass  # it had already finished (404)
                elif isinstance(cmd, ivr.StartTimer):
                    if timer:
                        timer.cancel()
                    timer = loop.call_later(cmd.seconds, call.queue.put_nowait,
                                            AriEvent("NoInput", {}, time.time()))
                elif isinstance(cmd, ivr.CancelTimer) and timer:
                    timer.cancel()
                    timer = None
                elif isinstance(cmd, ivr.Decided) and not decided:
                    decided = True
                    if on_decided is not None:
                        await on_decided(cmd.outcome)
                elif isinstance(cmd, ivr.Hangup):
                    await self._hangup(call.channel_id)
                elif isinstance(cmd, ivr.Finished):
                    if timer:
                        timer.cancel()
                    if kind not in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
                        await self._hangup(call.channel_id)
                    return CallResult(cmd.outcome, cmd.keys, answered_at)

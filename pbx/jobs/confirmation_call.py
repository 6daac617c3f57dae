"""The confirmation robot on the flow runner: one pure flow per call
(``pbx.robots.confirmation.ConfirmationFlow``: originate, AMD, the Q.850 cause of an unanswered
call, the IVR) carried out by the one ARI flow runner (``pbx.ari.flow_runner.FlowRunner``), which
the website callback robot shares."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pbx.ari.client import AriClient
from pbx.ari.flow_runner import FlowRunner
from pbx.outbound.tts import PromptCache, render_phrases
from pbx.robots.confirmation import ConfirmationFlow
from pbx.settings import Settings

log = logging.getLogger(__name__)
MAX_CALL_SECONDS = 300.0


@dataclass(frozen=True)
class CallResult:
    # confirmed | reschedule | cancelled | no_key | hangup | no_answer | busy | machine | failed
    # | not_started (Asterisk refused the call: the patient was never dialled)
    outcome: str
    keys: str = ""
    answered_at: float | None = None
    reason: str = ""  # why a call failed or never started, for the escort's log


class RobotCaller:
    def __init__(self, ari: AriClient, settings: Settings, prompts: PromptCache,
                 phrases: dict[str, str], runner: FlowRunner | None = None,
                 route: Callable[[str], tuple[str, str]] = lambda number: ("operator", number),
                 refuse: Callable[[str], Awaitable[str]] | None = None) -> None:
        self.ari = ari
        self.refuse = refuse  # number -> why the toll-fraud limits refuse it ("" : it may go)
        self.route = route  # number -> the provider outgoing calls leave by now, and the number as it wants it
        self.settings = settings
        self.prompts = prompts
        self.phrase_texts = phrases
        self.phrases: dict[str, Path] = {}
        self.runner = runner or FlowRunner(ari, settings.asterisk.ari_app)
        self._own_runner = runner is None

    async def start(self) -> None:
        if self._own_runner:
            await self.runner.start()

    async def stop(self) -> None:
        if self._own_runner:
            await self.runner.stop()

    @property
    def active(self) -> int:
        return self.runner.active

    async def hangup_leftovers(self, channel_ids: list[str]) -> None:
        for channel_id in channel_ids:
            await self.runner.hangup(channel_id)

    def _endpoint(self, number: str) -> str:
        """``robot.dial`` filled in: {number} (as the provider wants it when {trunk} is used)."""
        trunk, dialled = self.route(number.lstrip("+"))
        dial = self.settings.robot.dial
        return dial.format(number=dialled if "{trunk}" in dial else number.lstrip("+"), trunk=trunk)

    async def call(self, number: str, greeting: Path, channel_id: str, *, caller_id: str = "",
                   amd: bool = False, on_decided: Callable[[str], Awaitable[None]] | None = None) -> CallResult:
        """Call the patient and run the menu; returns the outcome. Never raises for the
        patient's behaviour; an ARI failure is the outcome ``not_started`` or ``failed``."""
        r = self.settings.robot
        if self.refuse is not None and (reason := await self.refuse(number)):
            return CallResult("not_started", reason=f"запрещено: {reason}")
        if not self.phrases:
            self.phrases = await render_phrases(self.prompts, self.phrase_texts)
        media = {name: f"sound:{path}" for name, path in self.phrases.items()} | {"main": f"sound:{greeting}"}
        flow = ConfirmationFlow(
            channel=channel_id, endpoint=self._endpoint(number), media=media,
            ring_seconds=r.ring_seconds, caller_id=caller_id, amd=amd, max_errors=r.max_errors,
            input_timeout=r.input_timeout, max_call_seconds=MAX_CALL_SECONDS,
        )
        out = await self.runner.run(flow, on_report=on_decided)
        return CallResult(out.outcome, out.keys, out.answered_at, out.reason)

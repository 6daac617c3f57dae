"""Robot flows: the confirmation flow driven fact by fact (pure), and the one ARI flow runner
against a small aiohttp fake of Asterisk: the confirmation call answered, busy, refused, and a
flow owning two channels (the website callback robot rings several phones at once)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from pbx.ari.client import AriClient
from pbx.ari.flow_runner import FlowRunner
from pbx.robots import flow as f
from pbx.robots.confirmation import MAX_CALL, NO_INPUT, ConfirmationFlow
from tests.unit.test_ari_client import FakeAri

MEDIA = {p: f"sound:/p/{p}" for p in ("main", "invalid", "no_input", "confirmed", "reschedule", "cancelled", "goodbye")}


def confirmation(**kw) -> ConfirmationFlow:
    return ConfirmationFlow("robot-1", "Local/79990000001@patient-sim", MEDIA, 30, **kw)


def kinds(commands: list[f.Command]) -> list[str]:
    return [type(c).__name__ for c in commands]


# ---- the pure flow ----------------------------------------------------------------------------
def test_answered_key_1_confirms() -> None:
    flow = confirmation(caller_id="74951110001")
    start = flow.start()
    assert start == [f.StartTimer(MAX_CALL, 300.0),
                     f.Originate("robot-1", "Local/79990000001@patient-sim", 30, "74951110001", False)]
    play = flow.feed(f.Answered("robot-1", 10.0))
    assert f.Play("robot-1", "robot-1-pb-1", "sound:/p/main") in play
    assert flow.feed(f.PromptDone("robot-1", "robot-1-pb-1", 15.0)) == [f.StartTimer(NO_INPUT, 7.0)]
    out = flow.feed(f.Key("robot-1", "1", 16.0))
    assert out[0] == f.Report("confirmed") and f.Play("robot-1", "robot-1-pb-2", "sound:/p/confirmed") in out
    out = flow.feed(f.PromptDone("robot-1", "robot-1-pb-2", 18.0))
    assert f.Hangup("robot-1") in out and out[-1] == f.Outcome("confirmed", "1", 10.0)
    assert flow.feed(f.HungUp("robot-1", 16, 18.1)) == []  # over: nothing more


def test_barge_in_stops_the_playing_prompt() -> None:
    flow = confirmation()
    flow.start()
    flow.feed(f.Answered("robot-1", 10.0))
    out = flow.feed(f.Key("robot-1", "2", 11.0))  # while the main prompt plays
    assert f.StopPlayback("robot-1-pb-1") in out and f.Report("reschedule") in out
    assert flow.feed(f.PromptDone("robot-1", "robot-1-pb-1", 11.1)) == []  # the stopped one


@pytest.mark.parametrize(("cause", "outcome"), [(17, "busy"), (19, "no_answer"), (21, "no_answer"), (3, "failed")])
def test_never_answered_by_cause(cause: int, outcome: str) -> None:
    flow = confirmation()
    flow.start()
    assert flow.feed(f.HungUp("robot-1", cause, 40.0, final=False)) == []  # wait for the cause
    assert flow.feed(f.HungUp("robot-1", cause, 40.1))[-1] == f.Outcome(outcome)


def test_machine_refused_and_too_long() -> None:
    flow = confirmation(amd=True)
    assert flow.start()[1].amd
    out = flow.feed(f.Answered("robot-1", 5.0, machine=True))
    assert out[0] == f.Hangup("robot-1") and out[-1] == f.Outcome("machine", "", 5.0)
    flow = confirmation()
    flow.start()
    assert flow.feed(f.OriginateFailed("robot-1", "Asterisk: no app", 1.0))[-1].outcome == "not_started"
    flow = confirmation()
    flow.start()
    assert flow.feed(f.OriginateFailed("robot-1", "silent", 1.0, placed=True))[-1].outcome == "failed"
    flow = confirmation()
    flow.start()
    flow.feed(f.Answered("robot-1", 5.0))
    out = flow.feed(f.TimerDue(MAX_CALL, 305.0))
    assert out[0] == f.Hangup("robot-1") and out[-1].outcome == "failed" and "300" in out[-1].reason


def test_silence_then_goodbye() -> None:
    flow = confirmation(max_errors=2)
    flow.start()
    flow.feed(f.Answered("robot-1", 1.0))
    flow.feed(f.PromptDone("robot-1", "robot-1-pb-1", 2.0))
    out = flow.feed(f.TimerDue(NO_INPUT, 9.0))
    assert f.Play("robot-1", "robot-1-pb-2", "sound:/p/no_input") in out
    flow.feed(f.PromptDone("robot-1", "robot-1-pb-2", 10.0))
    flow.feed(f.PromptDone("robot-1", "robot-1-pb-3", 12.0))
    out = flow.feed(f.TimerDue(NO_INPUT, 19.0))
    assert f.Play("robot-1", "robot-1-pb-4", "sound:/p/goodbye") in out
    assert flow.feed(f.PromptDone("robot-1", "robot-1-pb-4", 21.0))[-1] == f.Outcome("no_key", "", 1.0)


# ---- the runner against a fake Asterisk ------------------------------------------------------------
class FakeAsterisk(FakeAri):
    """Channels that answer, are busy, or are refused; prompts that finish."""

    def __init__(self) -> None:
        super().__init__()
        self.behaviour: dict[str, str] = {}  # endpoint -> answer | busy | refuse | silent
        self.requests: list[tuple[str, str]] = []
        self.up: set[str] = set()
        self.drop_play = False
        router = self.server.app.router
        router.add_post("/ari/channels", self.originate)
        router.add_post("/ari/channels/{id}/play", self.play)
        router.add_delete("/ari/channels/{id}", self.hangup)
        router.add_get("/ari/channels/{id}", self.channel)
        router.add_delete("/ari/playbacks/{id}", self.stop_playback)

    def later(self, event: dict, delay: float = 0.02) -> None:
        asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self.push(event)))

    async def originate(self, request: web.Request) -> web.Response:
        q = request.query
        self.requests.append(("originate", q["endpoint"]))
        kind = self.behaviour.get(q["endpoint"], "answer")
        cid = q["channelId"]
        if kind == "refuse":
            return web.json_response({"message": "Allocation failed"}, status=500)
        if kind == "answer":
            self.up.add(cid)
            self.later({"type": "StasisStart", "channel": {"id": cid}, "args": ["robot", "HUMAN"]})
        elif kind == "busy":
            self.later({"type": "ChannelDestroyed", "channel": {"id": cid}, "cause": 17})
        return web.json_response({"id": cid})

    async def channel(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        if cid in self.up:
            return web.json_response({"id": cid})
        return web.json_response({"message": "Channel not found"}, status=404)

    async def play(self, request: web.Request) -> web.Response:
        cid, pid = request.match_info["id"], request.query["playbackId"]
        self.requests.append(("play", request.query["media"]))
        if self.drop_play:  # Asterisk dies: the connection closes unanswered, the channel is gone
            assert request.transport is not None
            request.transport.close()
            self.later({"type": "ChannelDestroyed", "channel": {"id": cid}, "cause": 16}, 0.05)
            return web.Response(status=204)
        self.later({"type": "PlaybackFinished", "playback": {"id": pid, "target_uri": f"channel:{cid}"}}, 0.05)
        return web.json_response({"id": pid})

    async def hangup(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        self.requests.append(("hangup", cid))
        if cid not in self.up:
            return web.json_response({"message": "Channel not found"}, status=404)
        self.up.discard(cid)
        self.later({"type": "StasisEnd", "channel": {"id": cid}})
        self.later({"type": "ChannelDestroyed", "channel": {"id": cid}, "cause": 16}, 0.03)
        return web.Response(status=204)

    async def stop_playback(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "Playback not found"}, status=404)

    def press(self, channel: str, digit: str) -> None:
        self.later({"type": "ChannelDtmfReceived", "channel": {"id": channel}, "digit": digit}, 0.0)


@pytest.fixture
async def asterisk():
    fake = FakeAsterisk()
    await fake.server.start_server()
    client = AriClient(f"http://127.0.0.1:{fake.server.port}", "u", "p", "clinic-pbx",
                       backoff_min=0.05, backoff_max=0.2, request_timeout=1.0)
    await client.start()
    assert await client.wait_connected(5)
    runner = FlowRunner(client, "clinic-pbx")
    await runner.start()
    yield fake, runner
    await runner.stop()
    await client.stop()
    await fake.server.close()


async def test_runner_confirmation_answered_and_key(asterisk) -> None:
    fake, runner = asterisk
    reports: list[str] = []

    async def on_report(what: str) -> None:
        reports.append(what)

    async def patient() -> None:  # presses 1 once the menu was played
        for _ in range(300):
            if ("play", "sound:/p/main") in fake.requests:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        fake.press("robot-1", "1")

    presser = asyncio.create_task(patient())
    out = await asyncio.wait_for(runner.run(confirmation(), on_report), 5)
    await presser
    assert out.outcome == "confirmed" and out.keys == "1" and out.answered_at is not None
    assert reports == ["confirmed"]
    assert ("play", "sound:/p/confirmed") in fake.requests and ("hangup", "robot-1") in fake.requests
    assert runner.active == 0 and not runner.playbacks


async def test_runner_busy_refused_and_a_stray_channel(asterisk) -> None:
    fake, runner = asterisk
    fake.behaviour["Local/79990000001@patient-sim"] = "busy"
    assert (await asyncio.wait_for(runner.run(confirmation()), 5)).outcome == "busy"
    fake.behaviour["Local/79990000001@patient-sim"] = "refuse"
    out = await asyncio.wait_for(runner.run(confirmation()), 5)
    assert out.outcome == "not_started" and "Allocation failed" in out.reason
    fake.up.add("left-over")  # a Stasis channel nobody owns (from before a restart) is hung up
    await fake.push({"type": "StasisStart", "channel": {"id": "left-over"}, "args": []})
    for _ in range(100):
        if ("hangup", "left-over") in fake.requests:
            break
        await asyncio.sleep(0.01)
    assert ("hangup", "left-over") in fake.requests


@dataclass
class TwoLegs:
    """A test flow owning two channels: call A, then B; B hangs up after answering, and the
    flow ends when a channel is gone for good."""

    answered: set[str] = field(default_factory=set)

    def start(self) -> list[f.Command]:
        return [f.Originate("admin", "PJSIP/101", 20)]

    def feed(self, fact: f.Fact) -> list[f.Command]:
        if isinstance(fact, f.Answered):
            self.answered.add(fact.channel)
            if fact.channel == "admin":
                return [f.Originate("patient", "Local/79990000001@patient-sim", 20, caller_id="74951110001")]
            return [f.Hangup("patient")]  # the patient hangs up after the talk
        if isinstance(fact, f.HungUp) and fact.final:
            return [f.Outcome("both" if self.answered == {"admin", "patient"} else "broken")]
        return []


async def test_runner_two_channels_of_one_flow(asterisk) -> None:
    fake, runner = asterisk
    flow = TwoLegs()
    out = await asyncio.wait_for(runner.run(flow), 5)
    assert out.outcome == "both" and flow.answered == {"admin", "patient"}
    assert [r for r in fake.requests if r[0] == "originate"] == [
        ("originate", "PJSIP/101"), ("originate", "Local/79990000001@patient-sim")]
    for _ in range(100):  # at the outcome the admin's channel still up is hung up
        if ("hangup", "admin") in fake.requests:
            break
        await asyncio.sleep(0.01)
    assert ("hangup", "admin") in fake.requests
    assert runner.active == 0


async def test_a_channel_that_ended_while_the_link_was_down_ends_its_flow(asterisk) -> None:
    """Asterisk keeps no events for a disconnected client: after the reconnect the runner asks
    for each of its channels, and one that is gone is a Vanished fact, so the flow ends now
    rather than at its ceiling."""
    fake, runner = asterisk

    flow = confirmation()
    run = asyncio.create_task(runner.run(flow))
    for _ in range(300):
        if ("play", "sound:/p/main") in fake.requests:
            break
        await asyncio.sleep(0.01)
    fake.up.discard("robot-1")  # Asterisk restarts: the call is gone, no event says so
    await fake.drop()
    out = await asyncio.wait_for(run, 5)
    assert out.outcome == "hangup" and out.answered_at is not None
    assert runner.active == 0


def test_vanished_in_the_pure_flows() -> None:
    from crm.rules import callback as cr
    from pbx.robots.callback import CallbackFlow

    cb = CallbackFlow(base="cb-1-1-x", desk_phones=("101", "102"), patient="79031112233", prompt="sound:p",
                      details=("sound:c",), closed="sound:b")
    cb.start()
    assert cb.feed(f.Vanished("cb-1-1-x-101", 5.0)) == []  # one ringing phone gone, the other rings
    cb.feed(f.Answered("cb-1-1-x-102", 6.0))
    out = cb.feed(f.Vanished("cb-1-1-x-102", 9.0))
    assert out[-1].outcome == cr.INTERRUPTED and cr.leg_of(cr.INTERRUPTED) == cr.CLINIC
    flow = confirmation()
    flow.start()
    assert flow.feed(f.Vanished("robot-1", 3.0))[-1].outcome == "failed"  # never answered, cause unknown


async def test_a_prompt_sent_while_asterisk_goes_away_is_not_a_crash(asterisk) -> None:
    """Asterisk killed while the robot sends a prompt: the request fails on the connection, and
    the call ends by what Asterisk says next (before: the runner raised, and the callback robot
    recorded «внутренняя ошибка» / failed instead of interrupted)."""
    fake, runner = asterisk
    fake.drop_play = True
    out = await asyncio.wait_for(runner.run(confirmation()), 5)
    assert ("play", "sound:/p/main") in fake.requests
    assert out.outcome != "failed" and runner.active == 0

"""The robots' one vocabulary: facts a flow is fed, commands it gives. Pure data.

A flow is a sans-I/O state machine (``Flow.start() -> [Command]``, ``Flow.feed(fact) ->
[Command]``); the ARI flow runner (``pbx.ari.flow_runner``) carries out the commands for any flow
and turns the channels' ARI events into facts. A flow may own several channels (the website
callback robot rings several desk phones at once and follows the administrator's channel into
the dialplan to the patient). Time arrives on the
facts; a flow never reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


# --- facts in -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answered:
    channel: str
    at: float
    machine: bool = False  # answering-machine detection said a machine answered


@dataclass(frozen=True)
class Key:
    channel: str
    digit: str
    at: float


@dataclass(frozen=True)
class PromptDone:
    channel: str
    playback: str
    at: float


@dataclass(frozen=True)
class HungUp:
    """The channel is going (``final`` False: it left Stasis or a hang-up was asked for) or gone
    (``final`` True: destroyed, with the cause that ended it)."""

    channel: str
    cause: int  # Q.850 (pbx.calls.q850)
    at: float
    final: bool = True


@dataclass(frozen=True)
class TimerDue:
    name: str
    at: float


@dataclass(frozen=True)
class OriginateFailed:
    """Asterisk refused the call (``placed`` False: the number was never dialled), or the
    request's answer never came and no event of the channel followed (``placed`` True: it may
    have rung)."""

    channel: str
    reason: str
    at: float
    placed: bool = False


@dataclass(frozen=True)
class Dialled:
    """The channel, sent on into the dialplan (``Continue``), dialled someone who answered
    (``status`` ANSWER) or did not (BUSY, NOANSWER, CHANUNAVAIL, CONGESTION, CANCEL)."""

    channel: str
    status: str
    at: float


@dataclass(frozen=True)
class Vanished:
    """The link to Asterisk dropped and, once back, the channel was gone: it ended while
    nobody watched (Asterisk restarted, or the events were lost), so its end is unknown."""

    channel: str
    at: float


Fact = Answered | Key | PromptDone | HungUp | TimerDue | OriginateFailed | Dialled | Vanished


# --- commands out -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Originate:
    channel: str  # the channel id the flow chooses, so no event can come for an unknown call
    endpoint: str  # e.g. ``Local/79990000001@patient-sim`` or ``PJSIP/101``
    ring_seconds: int
    caller_id: str = ""
    amd: bool = False  # through the answering-machine detection context first
    variables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Play:
    channel: str
    playback: str  # the playback id the flow chooses; PromptDone carries it back
    media: str  # ``sound:/path/without/extension``


@dataclass(frozen=True)
class StopPlayback:
    playback: str


@dataclass(frozen=True)
class StartTimer:
    name: str
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class Continue:
    """Send the channel on into the dialplan (the callback robot's patient leg goes through
    ``clinic-outgoing`` as an ordinary outgoing call: caller ID, recording, CDR, live card).
    The runner keeps following the channel there; ``Dialled`` and ``HungUp`` come back."""

    channel: str
    context: str
    extension: str
    variables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Hangup:
    channel: str


@dataclass(frozen=True)
class Report:
    """Something decided during the call, to act on at once (a confirmation key: the schedule
    changes even if the patient hangs up during the closing phrase)."""

    what: str


@dataclass(frozen=True)
class Outcome:
    """The flow is over: the runner hangs up whatever of its channels is still up."""

    outcome: str
    keys: str = ""
    answered_at: float | None = None
    reason: str = ""
    talk: float = 0.0  # seconds two parties were connected (the callback robot)


Command = Originate | Play | StopPlayback | StartTimer | CancelTimer | Continue | Hangup | Report | Outcome


class Flow(Protocol):
    def start(self) -> list[Command]: ...

    def feed(self, fact: Fact) -> list[Command]: ...

"""AMI headers -> the small typed events the tracker understands. Pure.

Only what call tracking needs survives normalisation; everything else (RTCP, CEL, Newexten,
most VarSets, ...) becomes ``None`` and costs one dict lookup. Time comes from the event's own
``Timestamp`` header (Asterisk's clock, ``timestampevents = yes``), falling back to the
receive time, so replaying a recording gives the same records as the live run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    uniqueid: str
    linkedid: str
    channel: str


@dataclass(frozen=True, slots=True)
class NewChannel(Event):
    caller_num: str
    caller_name: str
    context: str
    exten: str


@dataclass(frozen=True, slots=True)
class ChannelVar(Event):
    name: str  # without the inheritance underscores
    value: str


@dataclass(frozen=True, slots=True)
class StateChange(Event):
    state: str  # Ringing, Up, ...


@dataclass(frozen=True, slots=True)
class CallerIdChange(Event):
    caller_num: str
    caller_name: str


@dataclass(frozen=True, slots=True)
class QueueJoin(Event):
    queue: str
    count: int


@dataclass(frozen=True, slots=True)
class QueueLeave(Event):
    queue: str
    count: int


@dataclass(frozen=True, slots=True)
class QueueAbandon(Event):
    queue: str


@dataclass(frozen=True, slots=True)
class DialBegin(Event):
    dest_uniqueid: str
    dest_channel: str
    dial_string: str


@dataclass(frozen=True, slots=True)
class DialState(Event):
    dest_uniqueid: str
    status: str


@dataclass(frozen=True, slots=True)
class DialEnd(Event):
    dest_uniqueid: str
    dest_channel: str
    status: str


@dataclass(frozen=True, slots=True)
class AgentRingNoAnswer(Event):
    dest_uniqueid: str
    member: str


@dataclass(frozen=True, slots=True)
class BridgeEnter(Event):
    bridge: str


@dataclass(frozen=True, slots=True)
class BridgeLeave(Event):
    bridge: str


@dataclass(frozen=True, slots=True)
class Transferred(Event):
    """A transfer completed (a phone's REFER, the transfer key, AMI): the channels that
    passed the call on (``uniqueid`` and ``others``) leave it, and their hang-ups do not end it."""
    others: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HangupRequest(Event):
    soft: bool
    cause: int


@dataclass(frozen=True, slots=True)
class Hangup(Event):
    cause: int
    cause_txt: str


@dataclass(frozen=True, slots=True)
class Hold(Event):
    on: bool


@dataclass(frozen=True, slots=True)
class ChannelSnapshot(Event):
    """One live channel from CoreShowChannels (resync after a reconnect)."""

    state: str
    caller_num: str
    caller_name: str
    context: str
    exten: str
    bridge: str
    seconds: int


# The variables our dialplan and FastAGI set; others are noise for the tracker.
TRACKED_VARS = frozenset({
    "CLINIC_DID", "CLINIC_QUEUE", "CLINIC_DIRECTION", "CLINIC_RECORDING", "CLINIC_CALLER_TYPE",
    "CLINIC_PATIENT_ID", "CLINIC_CALLER_E164", "CLINIC_CALLEE", "CLINIC_ORIGINATED_BY",
    "CLINIC_AGI_STATUS",
})


def _s(headers: Mapping[str, Any], key: str) -> str:
    value = headers.get(key, "")
    if isinstance(value, list):  # a repeated header: the last one wins
        value = value[-1] if value else ""
    return value if isinstance(value, str) else str(value)


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _time(headers: Mapping[str, Any], received_at: float) -> float:
    try:
        return float(_s(headers, "Timestamp"))
    except ValueError:
        return received_at


def _base(headers: Mapping[str, Any], received_at: float, prefix: str = "") -> tuple[float, str, str, str]:
    return (
        _time(headers, received_at),
        _s(headers, prefix + "Uniqueid"),
        _s(headers, prefix + "Linkedid"),
        _s(headers, prefix + "Channel"),
    )


# Events about several channels name them with a prefix; the first one is the event's own.
_PREFIX = {"BlindTransfer": "Transferer", "AttendedTransfer": "OrigTransferer"}


def normalize(name: str, headers: Mapping[str, Any], received_at: float) -> Event | None:
    """The tracker's view of one AMI event, or None when it does not matter for calls.

    Malformed input (a missing Uniqueid, a non-numeric count) never raises: the event is
    dropped (None) or the field takes a neutral default."""
    builder = _BUILDERS.get(name)
    if builder is None:
        return None
    base = _base(headers, received_at, _PREFIX.get(name, ""))
    if not base[1]:
        return None
    return builder(base, headers)


def _newchannel(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return NewChannel(*b, _s(h, "CallerIDNum"), _s(h, "CallerIDName"), _s(h, "Context"), _s(h, "Exten"))


def _varset(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event | None:
    name = _s(h, "Variable").lstrip("_")
    if name not in TRACKED_VARS:
        return None
    return ChannelVar(*b, name, _s(h, "Value"))


def _newstate(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return StateChange(*b, _s(h, "ChannelStateDesc"))


def _newcallerid(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return CallerIdChange(*b, _s(h, "CallerIDNum"), _s(h, "CallerIDName"))


def _queue_join(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return QueueJoin(*b, _s(h, "Queue"), _int(_s(h, "Count")))


def _queue_leave(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return QueueLeave(*b, _s(h, "Queue"), _int(_s(h, "Count")))


def _queue_abandon(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return QueueAbandon(*b, _s(h, "Queue"))


def _dial_begin(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event | None:
    dest = _s(h, "DestUniqueid")
    if not dest:
        return None
    return DialBegin(*b, dest, _s(h, "DestChannel"), _s(h, "DialString"))


def _dial_state(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event | None:
    dest = _s(h, "DestUniqueid")
    return DialState(*b, dest, _s(h, "DialStatus")) if dest else None


def _dial_end(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event | None:
    dest = _s(h, "DestUniqueid")
    if not dest:
        return None
    return DialEnd(*b, dest, _s(h, "DestChannel"), _s(h, "DialStatus"))


def _ring_no_answer(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event | None:
    dest = _s(h, "DestUniqueid")
    return AgentRingNoAnswer(*b, dest, _s(h, "MemberName")) if dest else None


def _bridge_enter(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return BridgeEnter(*b, _s(h, "BridgeUniqueid"))


def _bridge_leave(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return BridgeLeave(*b, _s(h, "BridgeUniqueid"))


def _hangup_request(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return HangupRequest(*b, False, _int(_s(h, "Cause")))


def _soft_hangup_request(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return HangupRequest(*b, True, _int(_s(h, "Cause")))


def _hangup(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return Hangup(*b, _int(_s(h, "Cause")), _s(h, "Cause-txt"))


def _transfer(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event | None:
    if _s(h, "Result") != "Success":
        return None  # a failed transfer leaves everyone where they were
    second = _s(h, "SecondTransfererUniqueid")  # an attended transfer's consultation leg
    return Transferred(*b, (second,) if second else ())


def _hold(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return Hold(*b, True)


def _unhold(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return Hold(*b, False)


def _core_show_channel(b: tuple[float, str, str, str], h: Mapping[str, Any]) -> Event:
    return ChannelSnapshot(
        *b, _s(h, "ChannelStateDesc"), _s(h, "CallerIDNum"), _s(h, "CallerIDName"),
        _s(h, "Context"), _s(h, "Exten"), _s(h, "BridgeId"), _duration(_s(h, "Duration")),
    )


def _duration(text: str) -> int:
    """CoreShowChannel's Duration is HH:MM:SS."""
    parts = text.split(":")
    if len(parts) != 3:
        return 0
    return _int(parts[0]) * 3600 + _int(parts[1]) * 60 + _int(parts[2])


_BUILDERS = {
    "Newchannel": _newchannel,
    "VarSet": _varset,
    "Newstate": _newstate,
    "NewCallerid": _newcallerid,
    "QueueCallerJoin": _queue_join,
    "QueueCallerLeave": _queue_leave,
    "QueueCallerAbandon": _queue_abandon,
    "DialBegin": _dial_begin,
    "DialState": _dial_state,
    "DialEnd": _dial_end,
    "AgentRingNoAnswer": _ring_no_answer,
    "BridgeEnter": _bridge_enter,
    "BridgeLeave": _bridge_leave,
    "HangupRequest": _hangup_request,
    "SoftHangupRequest": _soft_hangup_request,
    "Hangup": _hangup,
    "BlindTransfer": _transfer,
    "AttendedTransfer": _transfer,
    "Hold": _hold,
    "Unhold": _unhold,
    "CoreShowChannel": _core_show_channel,
}

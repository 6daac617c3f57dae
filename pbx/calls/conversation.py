"""A conversation as the tracker holds it (channels, legs, variables) and pure views of it:
who called whom, on which clinic number, in which direction. No I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from crm.rules.call_records import INCOMING, INTERNAL, OUTGOING

# Leg states. "dialing" and "ringing" are open; "talking" is answered and open; the rest end it.
DIALING, RINGING, TALKING, DONE = "dialing", "ringing", "talking", "done"
LEG_TRANSITIONS: dict[str, frozenset[str]] = {
    DIALING: frozenset({RINGING, TALKING, DONE}),
    RINGING: frozenset({TALKING, DONE}),
    TALKING: frozenset({DONE}),
    DONE: frozenset(),
}

def endpoint_of(channel: str) -> str:
    """``PJSIP/101-00000001`` -> ``101``; ``Local/1@patient-sim-0000a;2`` -> ``Local/1@patient-sim``."""
    tech, _, rest = channel.partition("/")
    if not rest:
        return channel
    if tech == "Local":
        return "Local/" + rest.split(";", 1)[0].rsplit("-", 1)[0]
    return rest.rsplit("-", 1)[0]


@dataclass
class Channel:
    uniqueid: str
    name: str
    endpoint: str
    created_at: float
    caller_num: str = ""
    caller_name: str = ""
    exten: str = ""
    state: str = ""
    up_at: float | None = None
    ended_at: float | None = None


@dataclass
class Leg:
    uniqueid: str
    endpoint: str
    started_at: float
    dial_string: str = ""
    state: str = DIALING
    outcome: str = ""
    answered_at: float | None = None
    ended_at: float | None = None
    cause: int = 0  # Q.850 cause of the leg's hang-up request (17: the phone was busy)


@dataclass
class Conversation:
    linkedid: str
    started_at: float
    origin: str  # uniqueid of the first channel
    linkedids: list[str] = field(default_factory=list)
    channels: dict[str, Channel] = field(default_factory=dict)
    legs: dict[str, Leg] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    queue: str = ""
    answered_at: float | None = None
    answered_leg: str = ""  # the first party to answer (who answered the call)
    talking_leg: str = ""  # the clinic party talking now: another one after a transfer
    hangup_by: str = ""
    handed_over: set[str] = field(default_factory=set)  # channels that transferred the call away
    on_hold: bool = False
    shown: dict[str, str] = field(default_factory=dict)  # endpoint -> last card status sent
    recovered: bool = False  # rebuilt from a snapshot: our history of it is incomplete
    lost_at: float | None = None  # when the link to Asterisk went while it was live



def is_trunk(channel_or_endpoint: str, trunks: frozenset[str] | tuple[str, ...]) -> bool:
    return endpoint_of(channel_or_endpoint) in trunks


def direction(conv: Conversation, trunks: frozenset[str] | tuple[str, ...]) -> str:
    declared = conv.vars.get("CLINIC_DIRECTION", "")
    if declared in (INCOMING, OUTGOING, INTERNAL):
        return declared
    origin = conv.channels.get(conv.origin)
    if origin is not None and is_trunk(origin.name, trunks):
        return INCOMING
    if any(leg.endpoint in trunks for leg in conv.legs.values()):
        return OUTGOING
    return INTERNAL


def caller(conv: Conversation) -> tuple[str, str]:
    """(number, name) of the channel that started the conversation."""
    origin = conv.channels.get(conv.origin)
    if origin is None:
        return "", ""
    return origin.caller_num, origin.caller_name


def did(conv: Conversation, trunks: frozenset[str] | tuple[str, ...]) -> str:
    """The clinic number an incoming call came in on ("" otherwise)."""
    if conv.vars.get("CLINIC_DID"):
        return conv.vars["CLINIC_DID"]
    origin = conv.channels.get(conv.origin)
    if origin is not None and is_trunk(origin.name, trunks):
        return origin.exten
    return ""


def callee(conv: Conversation, trunks: frozenset[str] | tuple[str, ...]) -> str:
    """The number an outgoing call dialled."""
    if conv.vars.get("CLINIC_CALLEE"):
        return conv.vars["CLINIC_CALLEE"]
    for leg in conv.legs.values():
        if leg.endpoint in trunks and leg.dial_string:
            return leg.dial_string.split("@", 1)[0]
    origin = conv.channels.get(conv.origin)
    return origin.exten if origin is not None else ""


def desk_endpoints(conv: Conversation, trunks: frozenset[str] | tuple[str, ...]) -> list[str]:
    """The desk phones that should see a card for this conversation."""
    found = []
    if direction(conv, trunks) == OUTGOING:
        origin = conv.channels.get(conv.origin)
        if origin is not None and origin.name.startswith("PJSIP/") and not is_trunk(origin.name, trunks):
            found.append(origin.endpoint)
    for leg in conv.legs.values():
        if leg.endpoint not in trunks and leg.endpoint not in found:
            found.append(leg.endpoint)
    return found

"""Click-to-call: AMI Originate rings the employee's desk phone first; when it is picked up,
the dialplan ([clinic-outgoing]) dials the patient through the operator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pbx.ami.client import AmiClient


class OriginateError(Exception):
    pass


@dataclass(frozen=True)
class OriginateRequest:
    extension: str  # the employee's desk phone, e.g. "101"
    number: str  # the dialable patient number, e.g. "79161234567"
    user_id: int | None = None
    display: str = ""  # shown on the desk phone while it rings (the patient's name)
    ring_seconds: int = 30


def originate_action(req: OriginateRequest) -> dict[str, Any]:
    if not req.extension.isdigit() or not req.number.lstrip("+").isdigit() or req.number.count("+") > 1:
        raise OriginateError("bad extension or number")
    # a Russian number as the dialplan has always had it (7…); a foreign one keeps its "+": its
    # digits alone could read as a Russian 8… number (+882… would become 8 821…) and the
    # toll-fraud check must see where the call really goes
    number = req.number.lstrip("+") if not req.number.startswith("+") or req.number.startswith("+7") else req.number
    display = req.display.replace('"', "").replace("\n", " ")[:40] or number
    return {
        "Action": "Originate",
        "Channel": f"PJSIP/{req.extension}",
        "Context": "clinic-outgoing",
        "Exten": number,
        "Priority": "1",
        "CallerID": f'"{display}" <{number}>',
        "Timeout": str(req.ring_seconds * 1000),
        "Async": "true",
        "Variable": [
            "CLINIC_DIRECTION=outgoing",
            f"CLINIC_CALLEE={number}",
            f"CLINIC_ORIGINATED_BY={req.user_id or ''}",
        ],
    }


async def originate(ami: AmiClient, req: OriginateRequest) -> str:
    """Start the call; returns the Uniqueid of the desk phone's channel (the call's linkedid).
    Raises OriginateError when Asterisk refuses or the desk phone does not answer."""
    reply: Any = await ami.action(originate_action(req), timeout=req.ring_seconds + 10)
    items = reply if isinstance(reply, list) else [reply]
    for item in items:
        if item.get("Event") == "OriginateResponse":
            if item.get("Response") != "Success":
                raise OriginateError(f"desk phone {req.extension}: {item.get('Reason', '?')}")
            return str(item.get("Uniqueid", ""))
    first = items[0]
    if first.get("Response") != "Success":
        raise OriginateError(str(first.get("Message", "originate refused")))
    return ""

"""«История обращений»'s orange rows (seed 004: «Оранжевым — текущий звонок»): the calls going on
now, from the live cards the panel already keeps (this box's and a chain's other boxes')."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Current:
    """A call going on now, as the report's orange row shows it (not an обращение yet: not counted)."""

    started: float
    direction: str
    who: str  # the patient's name, else the number ("" when the clinic number hides it)
    patient_id: int | None
    status: str  # «Разговор», «Звонит», «На удержании»
    phones: str  # the desk phones talking, else those ringing


CURRENT_STATUS = {"talking": "Разговор", "on_hold": "На удержании", "ringing": "Звонит", "dialing": "Набор номера"}


def current_calls(cards: list[dict[str, Any]]) -> list[Current]:
    """Seed 004: «Оранжевым — текущий звонок»: the live cards (this box's and a chain's other
    boxes'), one row a call however many phones it rings, the talking phones first, oldest first."""
    by_call: dict[str, list[dict[str, Any]]] = {}
    for card in cards:
        if card.get("status") in CURRENT_STATUS:
            by_call.setdefault(str(card["linkedid"]), []).append(card)
    rows = []
    for legs in by_call.values():
        talking = [c for c in legs if c["status"] in ("talking", "on_hold")]
        shown = talking or legs
        first = min(legs, key=lambda c: float(c.get("since") or 0))
        patients = first.get("patients") or []
        one = patients[0] if len(patients) == 1 else None
        rows.append(Current(float(first.get("since") or 0), str(first.get("direction", "")),
                            str(one["full_name"]) if one else str(first.get("phone") or ""),
                            int(one["id"]) if one else None, CURRENT_STATUS[shown[0]["status"]],
                            ", ".join(sorted({str(c["endpoint"]) for c in shown}))))
    return sorted(rows, key=lambda r: r.started)

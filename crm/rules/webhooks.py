"""Outgoing webhooks' rules (issue #33): which events there are, when a failed delivery is tried
again, and the envelope every event is sent in. Pure: time and facts come in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

EVENTS = {
    "call_finished": "Звонок завершён",
    "appointment_booked": "Запись на приём из звонка",
    "robot_outcome": "Итог звонка робота подтверждения",
    "request_closed": "Заявка на обратный звонок закрыта",
}
FIRST_RETRY = 30.0  # seconds; each retry waits four times the one before
LONGEST_WAIT = 6 * 3600.0
MAX_ATTEMPTS = 10  # ~1.5 days of retries, then «не доставлено»
TIMEOUT = 10.0  # seconds a receiver has to answer


def retry_delay(attempts: int) -> float | None:
    """After ``attempts`` failed tries, how long until the next; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return min(FIRST_RETRY * 4 ** max(0, attempts - 1), LONGEST_WAIT)


def delivered(status: int) -> bool:
    return 200 <= status < 300


def envelope(event: str, key: str, occurred_ts: float, data: dict[str, Any]) -> str:
    """The body as sent (and signed): the event, its unique id (a receiver dedupes on it), when
    it happened (UTC) and its data."""
    return json.dumps({"event": event, "id": key,
                       "occurred_at": datetime.fromtimestamp(occurred_ts, UTC).isoformat(timespec="seconds"),
                       "data": data}, ensure_ascii=False, sort_keys=True, default=str)

"""The website callback robot's part in the reports (seed 003): per day, how many requests came
and how each ended, and how long it took to connect the patient. A pure aggregator over plain
rows (``crm.callbacks.report_rows`` fetches them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from crm.rules import callback as cr


@dataclass
class CallbackDay:
    day: date | None  # None: the period's total
    requests: int = 0
    contacted: int = 0
    already_booked: int = 0
    other_means: int = 0
    gave_up: int = 0
    cancelled: int = 0
    open: int = 0
    attempts: int = 0
    waits: list[float] = field(default_factory=list)  # minutes from the request to the connection

    @property
    def median_minutes(self) -> float | None:
        return median(self.waits) if self.waits else None

    @property
    def contacted_share(self) -> float | None:
        return 100.0 * self.contacted / self.requests if self.requests else None

    def add(self, row: Mapping[str, Any]) -> None:
        self.requests += 1
        self.attempts += int(row["attempts"] or 0)
        if row["state"] == "open":
            self.open += 1
            return
        outcome = row["outcome"]
        if outcome == cr.CLOSED_CONTACTED:
            self.contacted += 1
            if row["closed_ts"] is not None:
                self.waits.append(max(0.0, (row["closed_ts"] - row["created_ts"]) / 60))
        elif outcome == cr.CLOSED_ALREADY_BOOKED:
            self.already_booked += 1
        elif outcome == cr.CLOSED_OTHER_MEANS:
            self.other_means += 1
        elif outcome == cr.CLOSED_GAVE_UP:
            self.gave_up += 1
        else:
            self.cancelled += 1


def per_day(rows: Iterable[Mapping[str, Any]], tz: ZoneInfo) -> tuple[list[CallbackDay], CallbackDay]:
    """Days in the clinic's zone, oldest first, and the total."""
    days: dict[date, CallbackDay] = {}
    total = CallbackDay(None)
    for row in rows:
        day = datetime.fromtimestamp(row["created_ts"], tz).date()
        days.setdefault(day, CallbackDay(day)).add(row)
        total.add(row)
    return [days[d] for d in sorted(days)], total

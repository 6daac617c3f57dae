"""The embedded Asterisk supervised (issue #31). Pure: the restarts so far and the time in, how
long to wait before the next one out. A crash is followed at once (a second), a crash loop backs
off (doubling to a minute) so a broken configuration does not spin the box."""

from __future__ import annotations

WINDOW = 600.0  # restarts counted over the last ten minutes
FIRST, LONGEST = 1.0, 60.0


def restart_delay(restarts: list[float], now: float) -> float:
    recent = [t for t in restarts if now - t < WINDOW]
    return min(LONGEST, FIRST * 2 ** len(recent)) if recent else FIRST

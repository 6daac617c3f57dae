"""The embedded Asterisk supervised (issue #31). Pure: the restarts so far and the time in, how
long to wait before the next one out. A crash is followed at once (a second), a crash loop backs
off (doubling to a minute) so a broken configuration does not spin the box."""

from __future__ import annotations

WINDOW = 600.0  # restarts counted over the last ten minutes
FIRST, LONGEST = 1.0, 60.0
PROMPT_RESTARTS = 3  # this many in the window are followed at once; a loop beyond backs off


def restart_delay(restarts: list[float], now: float) -> float:
    """A few crashes are each followed within a second (#31: three kills in a row, back within
    10 s each); beyond them the wait doubles to a minute (a broken configuration, a loop)."""
    recent = [t for t in restarts if now - t < WINDOW]
    if len(recent) < PROMPT_RESTARTS:
        return FIRST
    return min(LONGEST, FIRST * 2 ** (len(recent) - PROMPT_RESTARTS + 1))

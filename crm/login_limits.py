"""Login throttling: the rule is pure (failures and time in, a wait out); the small tracker
keeps recent failures per account and per client address in memory."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 60.0  # seconds over which failures are counted


def wait_after(failures: list[float], now: float, limit: int, window: float = WINDOW) -> float:
    """Seconds to wait before the next attempt: 0 while fewer than ``limit`` failures fall in
    the last ``window``; past it, the oldest of them must leave the window, and the wait
    doubles with every ``limit`` further failures (a flood waits ever longer)."""
    recent = sorted(t for t in failures if now - t < window)
    if len(recent) < limit:
        return 0.0
    excess = len(recent) // limit  # 1 at the limit, 2 at twice the limit, ...
    base = window - (now - recent[-limit])
    return max(1.0, base) * (2 ** (excess - 1))


@dataclass
class LoginThrottle:
    limit: int = 5
    keep: int = 64  # failures remembered per key (enough for the doubling)
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def wait(self, keys: list[str], now: float) -> float:
        return max((wait_after(list(self.failures.get(k, ())), now, self.limit) for k in keys), default=0.0)

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            q = self.failures.setdefault(key, deque(maxlen=self.keep))
            q.append(now)
        if len(self.failures) > 10_000:  # a spray of logins or addresses: forget the quiet ones
            for key in [k for k, q in self.failures.items() if not q or now - q[-1] > WINDOW * 4]:
                del self.failures[key]

    def succeeded(self, account_key: str) -> None:
        self.failures.pop(account_key, None)

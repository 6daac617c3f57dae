"""Login throttling: the rule is pure (failures and time in, a wait out); the small tracker
keeps recent attempts per key in memory.

An attempt is counted when it starts, before the password hash runs (a burst of parallel
guesses cannot all pass the check), and forgotten again only if it succeeds. Keys: the account
from one address (the strict one), the address alone and the account alone (both looser: a
spray over accounts, a guessing campaign from many addresses). A device that has logged in to
the account before (a signed cookie) counts only its own failures, so nobody else's guessing
locks the reception out. A wait once announced is kept until the time announced.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import deque
from dataclasses import dataclass, field

WINDOW = 60.0  # seconds over which failures are counted
WIDE = 4  # the address alone and the account alone allow this many times the limit


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


def attempt_keys(login: str, address: str, known_device: str = "") -> list[tuple[str, int]]:
    """(key, how many times the limit it allows) an attempt counts under. ``known_device``: the
    mark of a device that logged in to this account before (see ``is_known_device``): it counts
    only its own failures."""
    account = login.casefold()
    if known_device:
        return [(f"device:{account}|{known_device}", 1)]
    return [(f"pair:{account}|{address}", 1), (f"addr:{address}", WIDE), (f"login:{account}", WIDE)]


def device_mark(secret: str, login: str) -> str:
    """What a device that logged in to ``login`` keeps in its cookie (signed, so not forged)."""
    return hmac.new(secret.encode(), b"device:" + login.casefold().encode(), hashlib.sha256).hexdigest()[:32]


def is_known_device(secret: str, login: str, mark: str | None) -> bool:
    return bool(mark) and hmac.compare_digest(device_mark(secret, login), str(mark))


def client_address(peer: str, forwarded_for: str, trusted: tuple[str, ...]) -> str:
    """The client's address: the peer, or when the peer is a configured trusted proxy, the
    nearest address of ``X-Forwarded-For`` that is not one (a client cannot spoof past the
    proxy: only what the trusted proxies appended is believed)."""
    if not peer or not in_networks(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _valid(hop):
            return peer  # a malformed header: the proxy is all we know
        if not in_networks(hop, trusted):
            return hop
    return peer


def trusted_networks(text: str) -> tuple[str, ...]:
    """``web.trusted_proxies`` ("127.0.0.1, 10.0.0.0/24"): each an address or a network, checked
    at start-up so a typo fails loudly instead of trusting nobody (or everybody)."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if item:
            out.append(str(ipaddress.ip_network(item, strict=False)))  # ValueError names the bad one
    return tuple(out)


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


@dataclass
class LoginThrottle:
    limit: int = 5
    keep: int = 64  # attempts remembered per key (enough for the doubling)
    failures: dict[str, deque[float]] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)  # a wait announced is kept

    def wait(self, keys: list[tuple[str, int]], now: float) -> float:
        longest = 0.0
        for key, wide in keys:
            computed = wait_after(list(self.failures.get(key, ())), now, self.limit * wide)
            if computed > 0:
                self.blocked_until[key] = max(self.blocked_until.get(key, 0.0), now + computed)
            longest = max(longest, computed, self.blocked_until.get(key, 0.0) - now)
        return longest

    def begin(self, keys: list[tuple[str, int]], now: float) -> float:
        """The wait if the attempt must not be made; else 0, and the attempt counts as a failure
        from now on (until ``succeeded``): counted before the password is checked."""
        wait = self.wait(keys, now)
        if wait > 0:
            return wait
        for key, _ in keys:
            self.failures.setdefault(key, deque(maxlen=self.keep)).append(now)
        if len(self.failures) > 10_000:  # a spray of logins or addresses: forget the quiet ones
            for key in [k for k, q in self.failures.items() if not q or now - q[-1] > WINDOW * 4]:
                del self.failures[key]
                self.blocked_until.pop(key, None)
        return 0.0

    def succeeded(self, keys: list[tuple[str, int]], started: float) -> None:
        """The attempt begun at ``started`` was right: it was no failure; the account's own
        failures from that address are forgiven."""
        for key, _ in keys:
            q = self.failures.get(key)
            if q is not None and started in q:
                q.remove(started)
        pair = keys[0][0]
        self.failures.pop(pair, None)
        self.blocked_until.pop(pair, None)

"""SIP scanners banned (issue #30). Pure: Asterisk's security events and time in, bans out.

Once the box faces a provider's network, scanners try extensions and passwords all day. Asterisk
reports each failure as an AMI security event (an unknown account, a wrong digest, a request its
ACL refused); counted per source address, more than ``threshold`` failures within ``window``
seconds bans the address for ``ban_seconds`` (rendered into a PJSIP ACL, applied live). The
clinic's own networks, the box itself and the providers' addresses are never banned: a phone
with a stale password must not lock the clinic out, nor a provider's retries its line."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from crm.login_limits import in_networks

# the security events that are somebody failing (ChallengeSent and SuccessfulAuth are not)
FAILURES = frozenset({"InvalidAccountID", "ChallengeResponseFailed", "InvalidPassword", "FailedACL",
                      "RequestBadFormat", "AuthMethodNotAllowed", "UnexpectedAddress"})


def source_address(remote: str) -> str:
    """``IPV4/UDP/203.0.113.9/5060`` (an AMI security event's RemoteAddress) -> ``203.0.113.9``."""
    parts = remote.split("/")
    return parts[2] if len(parts) >= 4 and parts[0] in ("IPV4", "IPV6") else ""


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    threshold: int = 10  # failures ...
    window: float = 60.0  # ... within this many seconds
    ban_seconds: float = 3600.0
    never: tuple[str, ...] = ("127.0.0.1/32", "::1/128")  # plus the clinic's networks and providers


@dataclass
class ScanCounter:
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def failure(self, address: str, now: float, policy: GuardPolicy) -> bool:
        """Count one failure; True when the address has now earned a ban."""
        if not address or in_networks(address, policy.never):
            return False
        q = self.failures.setdefault(address, deque())
        q.append(now)
        while q and q[0] <= now - policy.window:
            q.popleft()
        if len(q) > policy.threshold:
            del self.failures[address]
            return True
        return False


def never_banned(own: Iterable[str], providers: Iterable[str]) -> tuple[str, ...]:
    """The networks no ban may touch: the box, the clinic's networks, the providers' addresses
    (names are resolved by nobody here: a provider known by name is covered by its identify
    addresses, which the panel asks for)."""
    out = ["127.0.0.1/32", "::1/128"]
    for item in [*own, *providers]:
        item = item.strip()
        if item and in_networks(item.split("/")[0], ("0.0.0.0/0", "::/0")):
            out.append(item if "/" in item else f"{item}/{32 if ':' not in item else 128}")
    return tuple(dict.fromkeys(out))

"""Signed webhooks: HMAC-SHA256 over ``timestamp + "." + body`` with a shared secret, a
timestamp tolerance and a replay guard. Pure: the time and the bytes come in."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict
from dataclasses import dataclass, field

TOLERANCE = 300.0  # seconds between the sender's timestamp and ours
TIMESTAMP_HEADER = "X-Clinic-Timestamp"
SIGNATURE_HEADER = "X-Clinic-Signature"  # "sha256=<hex>"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass
class ReplayGuard:
    """Signatures seen within the tolerance: the same signed request is accepted once."""

    seen: OrderedDict[str, float] = field(default_factory=OrderedDict)
    limit: int = 100_000

    def first_time(self, signature: str, now: float) -> bool:
        while self.seen and (now - next(iter(self.seen.values())) > 2 * TOLERANCE or len(self.seen) > self.limit):
            self.seen.popitem(last=False)
        if signature in self.seen:
            return False
        self.seen[signature] = now
        return True


def check(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float,
          guard: ReplayGuard | None = None) -> str | None:
    """None when the request is authentic, fresh and new; else why it is refused."""
    if not secret:
        return "webhooks are not configured (no secret)"
    if not timestamp or not signature:
        return f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required"
    try:
        sent_at = float(timestamp)
    except ValueError:
        return "bad timestamp"
    if not math.isfinite(sent_at) or abs(now - sent_at) > TOLERANCE:  # "nan" compares false to everything
        return "timestamp outside the 5-minute tolerance"
    expected = sign(secret, timestamp, body)
    if not signature.isascii() or not hmac.compare_digest(signature.encode(), expected.encode()):
        return "bad signature"
    if guard is not None and not guard.first_time(signature, now):
        return "replayed request"
    return None

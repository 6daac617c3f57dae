"""Which advertising channel brought a contact (seed 004), the rule checked by priority: a
call's UTM tags, then the caller's number, then the clinic number called, then the service it
came from; a request's UTM tags, then its service (source). Pure; the rules come from the
directory (``crm.ad_channels``)."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

UTM, CALLER, DID, SERVICE = "utm", "caller", "did", "service"
KIND_NAMES = {UTM: "UTM-метки", CALLER: "Номер звонящего", DID: "Номер клиники", SERVICE: "Внешний сервис"}
CALL_ORDER = (UTM, CALLER, DID, SERVICE)
REQUEST_ORDER = (UTM, SERVICE)


@dataclass(frozen=True)
class Rule:
    id: int
    kind: str
    value: str
    channel: str
    group: str
    position: int = 0


@dataclass(frozen=True)
class Facts:
    is_request: bool = False
    utm: tuple[tuple[str, str], ...] = ()
    caller: str = ""  # E.164
    did: str = ""
    service: str = ""


def matches(rule: Rule, f: Facts) -> bool:
    value = rule.value.strip()
    if rule.kind == UTM:
        key, _, want = value.partition("=")
        tags = {k.lower(): v.lower() for k, v in f.utm}
        return bool(key) and tags.get(key.strip().lower()) == want.strip().lower()
    if rule.kind == CALLER:
        if value.endswith("*"):
            return bool(f.caller) and f.caller.startswith(value[:-1])
        return f.caller == value
    if rule.kind == DID:
        return f.did.lstrip("+") == value.lstrip("+") and bool(f.did)
    if rule.kind == SERVICE:
        return bool(f.service) and f.service.strip().lower() == value.lower()
    return False


def channel_for(f: Facts, rules: list[Rule]) -> Rule | None:
    """The first rule that fires, by the kinds' priority, then each kind's own order."""
    order = REQUEST_ORDER if f.is_request else CALL_ORDER
    for kind in order:
        for rule in sorted((r for r in rules if r.kind == kind), key=lambda r: (r.position, r.id)):
            if matches(rule, f):
                return rule
    return None


def explain(f: Facts, rules: list[Rule]) -> list[tuple[str, Rule | None, bool]]:
    """«Посмотреть правила определения канала»: each kind in priority order, its first matching
    rule, and whether it is the one that fired."""
    fired = channel_for(f, rules)
    order = REQUEST_ORDER if f.is_request else CALL_ORDER
    out = []
    for kind in order:
        hit = next((r for r in sorted(rules, key=lambda r: (r.position, r.id)) if r.kind == kind and matches(r, f)),
                   None)
        out.append((kind, hit, hit is not None and hit == fired))
    return out


@dataclass(frozen=True)
class ChannelCost:
    channel: str
    appeals: int
    booked: int
    came: int
    spend: float

    def per(self, n: int) -> float | None:
        return self.spend / n if n else None


def period_spend(monthly: dict[tuple[str, str], float], first: date, last: date) -> dict[str, float]:
    """Each channel's spend over the days ``first``..``last``: a month's amount shared by its
    days, so a week costs a quarter of its month, a whole month its amount."""
    out: dict[str, float] = {}
    day = first
    while day <= last:
        days_in_month = calendar.monthrange(day.year, day.month)[1]
        month = f"{day.year:04d}-{day.month:02d}"
        for (channel, m), amount in monthly.items():
            if m == month:
                out[channel] = out.get(channel, 0.0) + amount / days_in_month
        day += timedelta(days=1)
    return out


def costs(results: Iterable[tuple[str, bool, bool] | tuple[str, bool, bool, int]],
          spend: dict[str, float]) -> list[ChannelCost]:
    """Per channel: обращения, how many booked, how many came, and the spend; ``results`` is
    (channel, booked, came) per обращение, or per group of alike ones with their number.
    Channels with spend but no обращение are kept (money spent for nothing shows)."""
    count: dict[str, list[int]] = {}
    for channel, booked, came, *n in results:
        weight = n[0] if n else 1
        c = count.setdefault(channel, [0, 0, 0])
        c[0] += weight
        c[1] += weight * int(booked)
        c[2] += weight * int(came)
    for channel in spend:
        count.setdefault(channel, [0, 0, 0])
    return sorted((ChannelCost(ch, a, b, c, round(spend.get(ch, 0.0), 2)) for ch, (a, b, c) in count.items()),
                  key=lambda x: (-x.spend, -x.appeals, x.channel))

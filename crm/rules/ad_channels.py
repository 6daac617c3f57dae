"""Which advertising channel brought a contact (seed 004), the rule checked by priority: a
call's UTM tags, then the caller's number, then the clinic number called, then the service it
came from; a request's UTM tags, then its service (source). Pure; the rules come from the
directory (``crm.ad_channels``)."""

from __future__ import annotations

from dataclasses import dataclass

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

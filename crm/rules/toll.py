"""Toll fraud (issue #30): where an outgoing call may go and how many a phone may make. Pure:
the dialled number, the policy and the time in; a verdict out. A guessed desk-phone password or
a forged website request must not become calls to premium and far-away numbers at the clinic's
cost, the most expensive thing that happens to small Asterisk boxes.

The number is classified by libphonenumber's metadata (``phonenumbers``): emergency, mobile,
landline, toll-free, premium (premium-rate and shared-cost, the numbers that pay their owner),
other (VoIP, personal, UAN, ...), in the clinic's country or abroad. By default a call may go to
the clinic's country's mobiles, landlines and free numbers; anything abroad and every premium
number is refused; emergency numbers always go out."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

EMERGENCY = {"112", "101", "102", "103", "104", "01", "02", "03", "04", "911"}
KINDS = {"mobile": "мобильные", "landline": "городские", "toll_free": "бесплатные (8-800)",
         "premium": "платные (8-809 и подобные)", "other": "прочие (IP-телефония, персональные)"}
DEFAULT_KINDS = frozenset({"mobile", "landline", "toll_free"})
_TYPES = {PhoneNumberType.MOBILE: "mobile", PhoneNumberType.FIXED_LINE: "landline",
          PhoneNumberType.FIXED_LINE_OR_MOBILE: "mobile", PhoneNumberType.TOLL_FREE: "toll_free",
          PhoneNumberType.PREMIUM_RATE: "premium", PhoneNumberType.SHARED_COST: "premium"}


@dataclass(frozen=True, slots=True)
class Destination:
    kind: str  # emergency | mobile | landline | toll_free | premium | other | invalid
    region: str = ""  # ISO country of the number ("" for emergency and invalid ones)


@dataclass(frozen=True, slots=True)
class TollPolicy:
    home: str = "RU"  # the clinic's country
    kinds: frozenset[str] = DEFAULT_KINDS  # allowed kinds at home
    countries: frozenset[str] = frozenset()  # other countries allowed (their mobiles and landlines)
    per_phone_hour: int = 20  # outgoing calls one desk phone may make in an hour (0: no cap)
    simultaneous: int = 10  # outgoing calls of the box at once (0: no cap)
    webhook_per_minute: int = 10  # website requests one source may send a minute
    webhook_per_day: int = 300  # and a day


def destination(number: str, home: str = "RU") -> Destination:
    digits = "".join(ch for ch in number if ch.isdigit())
    if digits in EMERGENCY and not number.strip().startswith("+"):
        return Destination("emergency")
    text = number.strip()
    if not text.startswith("+"):
        if home == "RU" and len(digits) == 11 and digits[0] in "78":
            text = "+7" + digits[1:]
        elif home == "RU" and len(digits) == 10:
            text = "+7" + digits
        elif home == "RU" and digits.startswith("810"):  # the old Russian international prefix
            text = "+" + digits[3:]
        elif len(digits) > 11:
            text = "+" + digits
    try:
        parsed = phonenumbers.parse(text, home)
    except NumberParseException:
        return Destination("invalid")
    if not phonenumbers.is_valid_number(parsed):
        return Destination("invalid", phonenumbers.region_code_for_country_code(parsed.country_code) or "")
    region = phonenumbers.region_code_for_number(parsed) or ""
    return Destination(_TYPES.get(phonenumbers.number_type(parsed), "other"), region)


def refusal(dest: Destination, policy: TollPolicy) -> str:
    """Why a call to ``dest`` is refused ("" : it may go)."""
    if dest.kind == "emergency":
        return ""
    if dest.kind == "invalid" and dest.region != policy.home:
        return "номер не существует"  # at home: a provider's service code, its own business
    if dest.kind == "premium":
        return "платный номер"
    if dest.region != policy.home:
        if dest.region in policy.countries and dest.kind in ("mobile", "landline"):
            return ""
        return f"международный звонок ({dest.region or '?'})"
    if dest.kind not in policy.kinds and dest.kind != "invalid":
        return f"запрещены: {KINDS.get(dest.kind, dest.kind)}"
    return ""


@dataclass
class CallCounter:
    """Outgoing calls per caller in the last hour (a sliding window; time comes in)."""

    window: float = 3600.0
    calls: dict[str, deque[float]] = field(default_factory=dict)

    def count(self, who: str, now: float) -> int:
        q = self.calls.get(who)
        while q and q[0] <= now - self.window:
            q.popleft()
        return len(q) if q else 0

    def add(self, who: str, now: float) -> None:
        self.calls.setdefault(who, deque()).append(now)


def verdict(number: str, caller: str, policy: TollPolicy, counter: CallCounter, now: float,
            concurrent: int = 0) -> str:
    """The check every outgoing call passes: the destination, the box's outgoing calls at once
    (``concurrent``, this one included), then the caller's hourly cap (a desk phone's extension;
    robots and transfers pass ``""``). "" : allowed (and counted). Emergency calls always go."""
    dest = destination(number, policy.home)
    reason = refusal(dest, policy)
    if reason or dest.kind == "emergency":
        return reason
    if policy.simultaneous and concurrent > policy.simultaneous:
        return f"больше {policy.simultaneous} исходящих звонков одновременно"
    if caller and policy.per_phone_hour and counter.count(caller, now) >= policy.per_phone_hour:
        return f"больше {policy.per_phone_hour} исходящих звонков за час с телефона {caller}"
    if caller:
        counter.add(caller, now)
    return ""


def policy_from(values: Mapping[str, object]) -> TollPolicy:
    """The policy as the clinic's settings keep it (``toll_*`` keys), checked."""
    kinds = frozenset(k for k in str(values.get("toll_kinds", ",".join(sorted(DEFAULT_KINDS)))).split(",")
                      if k in KINDS and k != "premium")
    countries = frozenset(c.strip().upper() for c in str(values.get("toll_countries", "")).split(",")
                          if len(c.strip()) == 2 and c.strip().isalpha())
    return TollPolicy(kinds=kinds, countries=countries,
                      per_phone_hour=_int(values.get("toll_per_phone_hour"), 20, 0, 1000),
                      simultaneous=_int(values.get("toll_simultaneous"), 10, 0, 1000),
                      webhook_per_minute=_int(values.get("toll_webhook_per_minute"), 10, 1, 10000),
                      webhook_per_day=_int(values.get("toll_webhook_per_day"), 300, 1, 100000))


def webhook_refusal(number: str, last_minute: int, last_day: int, policy: TollPolicy) -> str:
    """A website request the robot would call: refused when its number is one no call may go to,
    or when its source already sent its share (a public form turned into SMS pumping)."""
    if last_minute >= policy.webhook_per_minute:
        return f"more than {policy.webhook_per_minute} requests a minute from this source"
    if last_day >= policy.webhook_per_day:
        return f"more than {policy.webhook_per_day} requests a day from this source"
    reason = refusal(destination(number, policy.home), policy)
    return f"phone: calls to this number are not allowed ({reason})" if reason else ""


def _int(value: object, default: int, low: int, high: int) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return default
    return min(max(number, low), high)


def known_countries(codes: Iterable[str]) -> list[str]:
    return [c for c in codes if c in phonenumbers.SUPPORTED_REGIONS]

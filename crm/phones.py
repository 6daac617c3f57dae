"""Phone numbers: everything stored and compared in E.164 (``+79991234567``)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

DEFAULT_REGION = "RU"


def normalize(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """E.164 form of ``raw``, or None when it is not a plausible phone number.

    Russian habits are accepted: ``8 999 123-45-67``, ``79991234567``, ``+7 (999) 123 45 67``.
    """
    if not raw:
        return None
    text = raw.strip()
    if len(text) > 40:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return None
    if not text.startswith("+"):
        if region == "RU" and len(digits) == 11 and digits[0] in "78":
            text = "+7" + digits[1:]
        elif len(digits) > 11:
            text = "+" + digits  # international number without the plus (operator trunks)
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def kind(e164: str, region: str = DEFAULT_REGION) -> str:
    """``mobile``, ``landline`` or ``foreign`` (messages go to Russian mobiles only)."""
    number = phonenumbers.parse(e164, None)
    if phonenumbers.region_code_for_number(number) != region:
        return "foreign"
    t = phonenumbers.number_type(number)
    if t in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return "mobile"
    return "landline"


def search_clause(query: str, number_sql: str, name_sql: str) -> tuple[str, list[str]] | None:
    """The "ФИО или номер" box: three or more digits search the numbers (``number_sql`` has
    one ``?`` for a LIKE pattern), letters search the names (``name_sql`` likewise).
    Returns the SQL condition and its parameters, or None when the text has neither."""
    q = query.strip()
    digits = "".join(ch for ch in q if ch.isdigit())
    clauses, params = [], []
    if len(digits) >= 3:
        clauses.append(number_sql)
        params.append(f"%{digits}%")
    if any(ch.isalpha() for ch in q):
        clauses.append(name_sql)
        params.append(f"%{q}%")
    return ("(" + " OR ".join(clauses) + ")", params) if clauses else None

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
    if _russian_mobile(text, digits) and region == "RU":
        return "+7" + digits[1:]  # the commonest case without the library's parse (an import has 100,000s)
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


def extension(raw: str | None, region: str = DEFAULT_REGION) -> str:
    """The extension written after a number («доб. 5», «ext. 15», «#5»), "" when none. Such a
    number is refused where it is typed (#32): a robot or a desk phone cannot dial the
    extension, and storing the number without it would call the switchboard silently."""
    if not raw or len(raw) > 60:
        return ""
    try:
        return phonenumbers.parse(raw.strip(), region).extension or ""
    except NumberParseException:
        return ""


def refuse_extension(raw: str | None) -> None:
    """ValueError with the clear message when ``raw`` has an extension."""
    if refused := extension_refused(raw):
        raise ValueError(refused)


def extension_refused(raw: str | None) -> str:
    """The clear error for a number with an extension, "" when it has none."""
    ext = extension(raw)
    return (f"Номер с добавочным («доб. {ext}») не набрать: укажите прямой номер, а добавочный — в комментарии"
            if ext else "")


_PLAIN = frozenset("0123456789+-() .")


def _russian_mobile(text: str, digits: str) -> bool:
    """``+7 9xx``, ``8 9xx`` or ``7 9xx`` with ten digits after the country code, written with
    digits and separators only: the library would say the same (tested against it)."""
    return (len(digits) == 11 and digits[1] == "9" and (digits[0] == "7" or (digits[0] == "8" and text[0] != "+"))
            and all(ch in _PLAIN for ch in text) and text.count("+") <= 1 and text.lstrip("(").startswith(
                ("+7", "7", "8")))


def _e164_number(e164: str) -> phonenumbers.PhoneNumber:
    """An E.164 string as the library's number. ``+7`` and ten digits is built directly: the
    library's parse is most of ``kind``'s cost, and an import asks for 100,000s (tested equal)."""
    if len(e164) == 12 and e164.startswith("+7") and e164[2:].isdigit() and e164[2] != "0":
        return phonenumbers.PhoneNumber(country_code=7, national_number=int(e164[2:]))
    return phonenumbers.parse(e164, None)


def kind(e164: str, region: str = DEFAULT_REGION) -> str:
    """``mobile``, ``landline`` or ``foreign`` (messages go to Russian mobiles only)."""
    number = _e164_number(e164)
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

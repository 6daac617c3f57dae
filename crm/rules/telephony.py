"""The clinic's telephony as data (issue #29): what a SIP provider's settings may hold, checked
before anything reaches Asterisk's configuration. Pure.

Every value that is written into a config file passes one of the checks here: hosts, logins and
header names are plain tokens; a password is printable ASCII (its ``;`` escaped when rendered);
names shown in the panel never reach a config at all. So a newline, ``[section]``, ``#include``
or a quote typed into a form cannot break or extend Asterisk's configuration."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crm.rules import hours
from crm.rules.browser_phone import is_browser_extension

REGISTER, BY_ADDRESS = "register", "ip"
AUTH_MODES = {REGISTER: "регистрация (логин и пароль)", BY_ADDRESS: "по адресу провайдера"}
TRANSPORTS = {"udp": "UDP", "tcp": "TCP", "tls": "TLS (шифрование сигнализации)"}
DID_IN_RURI, DID_IN_TO = "ruri", "to"
DID_PLACES = {DID_IN_RURI: "в Request-URI", DID_IN_TO: "в заголовке To"}
DTMF_MODES = {"rfc4733": "RFC 4733 (RTP)", "info": "SIP INFO", "inband": "в звуке", "auto": "авто"}
CODECS = ("alaw", "ulaw", "g722", "g729", "opus")
# the queues the shipped queues.conf has, as the clinic knows them
QUEUE_NAMES = {"reception-ringall": "Регистратура: звонят все телефоны сразу",
               "reception-linear": "Регистратура: телефоны по очереди"}
TRUNK_PREFIX = "trunk-"
# how a provider wants a Russian number dialled (others and 112 go as dialled)
DIAL_FORMATS = {"7": "7XXXXXXXXXX", "8": "8XXXXXXXXXX", "+7": "+7XXXXXXXXXX"}

_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$")
_USER = re.compile(r"^[A-Za-z0-9._~+\-!$*()@]{1,64}$")  # the user part of a SIP URI (and Beeline's user@host)
_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
_ADDRESS = re.compile(r"^[0-9a-fA-F.:]{2,39}(?:/[0-9]{1,3})?$")
_PASSWORD = re.compile(r"^[\x21-\x7e]{1,80}$")


class TelephonyError(ValueError):
    """A refused value, with the form's field it belongs to."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Provider:
    id: int
    name: str
    server: str
    port: int = 5060
    transport: str = "udp"
    auth: str = REGISTER
    login: str = ""
    password: str = ""
    auth_user: str = ""
    from_user: str = ""
    from_domain: str = ""
    outbound_proxy: str = ""
    expiry: int = 300
    retry: int = 30
    addresses: tuple[str, ...] = ()
    did_from: str = DID_IN_RURI
    codecs: tuple[str, ...] = ("alaw", "ulaw")
    dtmf: str = "rfc4733"
    max_calls: int = 0
    qualify: bool = False
    dial_format: str = "7"
    outgoing: bool = False
    enabled: bool = True
    branch: int | None = None  # a chain: registers from its branch's box only (None: every box)

    @property
    def endpoint(self) -> str:
        """Asterisk's name of it: made of the id only, never of what a user typed."""
        return f"{TRUNK_PREFIX}{self.id}"


def _text(form: Mapping[str, str], key: str) -> str:
    return str(form.get(key) or "").strip()


def form_int(form: Mapping[str, str], key: str, default: int, low: int, high: int, what: str) -> int:
    raw = _text(form, key)
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise TelephonyError(key, f"{what}: целое число от {low} до {high}")
    return int(raw)


def _host(form: Mapping[str, str], key: str, what: str, *, required: bool = False) -> str:
    value = _text(form, key)
    if not value:
        if required:
            raise TelephonyError(key, f"Укажите {what}")
        return ""
    if not (_HOST.match(value) or _ADDRESS.match(value) and "/" not in value):
        raise TelephonyError(key, f"{what}: имя сервера или IP-адрес, только латиница, цифры, точки и дефисы")
    return value


def _user(form: Mapping[str, str], key: str, what: str) -> str:
    value = _text(form, key)
    if value and not _USER.match(value):
        raise TelephonyError(key, f"{what}: латиница, цифры и знаки . _ - + @, до 64 символов")
    return value


def _choice(form: Mapping[str, str], key: str, choices: Mapping[str, str], default: str, what: str) -> str:
    value = _text(form, key) or default
    if value not in choices:
        raise TelephonyError(key, f"{what}: выберите одно из значений списка")
    return value


def _addresses(form: Mapping[str, str]) -> tuple[str, ...]:
    found = []
    for item in _text(form, "addresses").replace(",", " ").split():
        if not (_ADDRESS.match(item) or _HOST.match(item)):
            raise TelephonyError("addresses", f"Адрес провайдера {item[:40]!r}: IP-адрес, сеть (1.2.3.0/24) или имя")
        found.append(item)
    return tuple(dict.fromkeys(found))


def _did_from(form: Mapping[str, str]) -> str:
    value = _text(form, "did_from") or DID_IN_RURI
    if value in DID_PLACES:
        return value
    if not _HEADER.match(value):
        raise TelephonyError("did_from", "Номер клиники: Request-URI, To или имя заголовка (латиница, цифры, _ . -)")
    return value


def _codecs(form: Mapping[str, str]) -> tuple[str, ...]:
    chosen = tuple(c for c in _text(form, "codecs").replace(",", " ").split() if c)
    unknown = [c for c in chosen if c not in CODECS]
    if unknown or not chosen:
        raise TelephonyError("codecs", f"Кодеки: из списка {', '.join(CODECS)}")
    return tuple(dict.fromkeys(chosen))


def _flag(form: Mapping[str, str], key: str, *, default: bool) -> bool:
    raw = _text(form, key).lower()
    return default if not raw else raw in ("1", "on", "true", "yes")


def check_provider(form: Mapping[str, str], provider_id: int = 0) -> Provider:
    """A provider from the panel's form, or ``TelephonyError`` naming the field refused."""
    name = " ".join(_text(form, "name").split())
    if not name or len(name) > 60:
        raise TelephonyError("name", "Название провайдера: от 1 до 60 символов")
    auth = _choice(form, "auth", AUTH_MODES, REGISTER, "Способ подключения")
    login, password = _user(form, "login", "Логин"), _text(form, "password")
    if password and not _PASSWORD.match(password):
        raise TelephonyError("password", "Пароль: латинские буквы, цифры и знаки без пробелов, до 80 символов")
    addresses = _addresses(form)
    if auth == REGISTER and not (login and password):
        raise TelephonyError("login" if not login else "password", "Для регистрации нужны логин и пароль")
    return Provider(
        id=provider_id, name=name,
        server=_host(form, "server", "сервер провайдера", required=True),
        port=form_int(form, "port", 5060, 1, 65535, "Порт"),
        transport=_choice(form, "transport", TRANSPORTS, "udp", "Транспорт"),
        auth=auth, login=login, password=password,
        auth_user=_user(form, "auth_user", "Пользователь авторизации"),
        from_user=_user(form, "from_user", "From: пользователь"),
        from_domain=_host(form, "from_domain", "From: домен"),
        outbound_proxy=_host(form, "outbound_proxy", "исходящий прокси"),
        expiry=form_int(form, "expiry", 300, 60, 3600, "Срок регистрации, с"),
        retry=form_int(form, "retry", 30, 10, 600, "Повтор регистрации, с"),
        addresses=addresses, did_from=_did_from(form), codecs=_codecs(form) if _text(form, "codecs") else ("alaw", "ulaw"),
        dtmf=_choice(form, "dtmf", DTMF_MODES, "rfc4733", "Тоновый набор"),
        max_calls=form_int(form, "max_calls", 0, 0, 1000, "Одновременных звонков"),
        dial_format=_choice(form, "dial_format", DIAL_FORMATS, "7", "Формат номера"),
        # Asterisk sends no call to a contact that stopped answering OPTIONS: asked for, never
        # assumed (a provider known by address needs it for its status)
        qualify=_flag(form, "qualify", default=auth == BY_ADDRESS),
        outgoing=_flag(form, "outgoing", default=False),
        enabled=_flag(form, "enabled", default=True),
        branch=int(_text(form, "branch")) if _text(form, "branch").isdigit() else None,
    )


def escape_value(value: str) -> str:
    """A checked value as Asterisk's config parser reads it back: ``;`` starts a comment
    unless escaped. Anything that could end the line was refused before."""
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("a line break cannot reach a config")
    return value.replace(";", "\\;")


def dial_number(number: str, fmt: str) -> str:
    """A number as a provider wants it dialled (the dialplan's [clinic-trunk-out] does the same
    for calls from the phones): a Russian number in ``fmt``, anything else as digits, short
    numbers as given."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) < 10:
        return number
    if len(digits) == 10:
        digits = "7" + digits
    elif len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    if len(digits) == 11 and digits.startswith("7"):
        return {"8": "8" + digits[1:], "+7": "+" + digits}.get(fmt, digits)
    return digits


def outgoing_provider(providers: list[Provider]) -> Provider | None:
    """The provider outgoing calls leave by: the one marked so, else the first enabled."""
    enabled = [p for p in providers if p.enabled]
    return next((p for p in enabled if p.outgoing), enabled[0] if enabled else None)


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    code: str  # registered | refused | unreachable | waiting | reachable | unknown
    text: str  # what the panel says, in Russian
    since: float | None = None


def trunk_status(p: Provider, registration: str, cause: str, contact: str, since: float | None) -> TrunkStatus:
    """A provider's state from what Asterisk reported: its registration's status (and the
    reason of a refusal, from the last ``Registry`` event) and its qualify contact's status."""
    reg = registration.lower()
    if p.auth == REGISTER:
        if reg == "registered":
            return TrunkStatus("registered", "зарегистрирован", since)
        if reg in ("rejected", "failed") or cause:
            return TrunkStatus("refused", f"отказ: {cause or registration}", since)
        if contact.lower() == "unreachable":
            return TrunkStatus("unreachable", "не отвечает", since)
        return TrunkStatus("waiting", "регистрируется…" if reg else "нет в Asterisk", since)
    if contact.lower() == "reachable":
        return TrunkStatus("reachable", "на связи", since)
    if contact.lower() == "unreachable":
        return TrunkStatus("unreachable", "не отвечает", since)
    return TrunkStatus("unknown", "ждём ответа на проверку", since)


# Asterisk's own words on a failed registration (its AMI ``Registry`` event says only "Rejected"):
# "403 Forbidden fatal response received from 'sip:…' on registration attempt to 'sip:…'"
_REG_LINE = re.compile(r"res_pjsip_outbound_registration\.c: (.+?) from '[^']*' on registration attempt to '([^']+)'")
_RESPONSE = re.compile(r"(?i)\s*\b(?:fatal|temporal)?\s*response\b\s*(?:received)?")


def registration_reasons(log_lines: Iterable[str]) -> dict[str, str]:
    """Client URI -> the reason of its last failed registration, from Asterisk's log."""
    out: dict[str, str] = {}
    for line in log_lines:
        m = _REG_LINE.search(line)
        if m is None:
            continue
        what = m.group(1)
        if what.lower().startswith("no response"):
            out[m.group(2)] = "нет ответа"
        else:
            out[m.group(2)] = _RESPONSE.sub(" ", what).replace("'", "").replace(" received", "").strip()[:80]
    return out


@dataclass(frozen=True, slots=True)
class ClinicNumber:
    did: str  # 11-15 digits, as the CRM stores it: 74951110001
    queue: str = "reception-ringall"
    hours: str = ""  # crm.rules.hours: "" = always open
    holidays: str = ""
    closed_message: str = ""  # what a caller hears outside the hours, in the clinic's words
    closed_mobile: str = ""  # then forwarded there (digits), or
    closed_callback: bool = False  # then a callback request for the robot at opening
    branch: int | None = None


def normalize_did(raw: str) -> str:
    """A clinic number as typed or as a provider sends it (+7 (495) 111-00-01, 8 495 ...,
    4951110001) -> 74951110001; "" when it is no phone number."""
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) == 10 and not raw.strip().startswith("+"):
        digits = "7" + digits  # a Russian number without its country code
    elif len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    return digits if 11 <= len(digits) <= 15 else ""


def check_number(form: Mapping[str, str], queues: Mapping[str, str] = QUEUE_NAMES) -> ClinicNumber:
    did = normalize_did(_text(form, "did"))
    if not did:
        raise TelephonyError("did", "Номер клиники: 11–15 цифр, например +7 495 111-00-01")
    queue = _text(form, "queue") or "reception-ringall"
    if queue not in queues:
        raise TelephonyError("queue", "Очередь: выберите из списка")
    hours_text, holidays_text = " ".join(_text(form, "hours").split()), " ".join(_text(form, "holidays").split())
    for key, parse, text in (("hours", hours.parse_hours, hours_text), ("holidays", hours.parse_holidays, holidays_text)):
        try:
            parse(text)
        except hours.HoursError as exc:
            raise TelephonyError(key, str(exc)) from None
    message = " ".join(_text(form, "closed_message").split())
    if len(message) > 500:
        raise TelephonyError("closed_message", "Сообщение в нерабочее время: до 500 символов")
    mobile = _text(form, "closed_mobile")
    if mobile and not normalize_did(mobile):
        raise TelephonyError("closed_mobile", "Мобильный для переадресации: 11–15 цифр, например +7 903 111-22-33")
    return ClinicNumber(did, queue, hours_text, holidays_text, message, normalize_did(mobile) if mobile else "",
                        _flag(form, "closed_callback", default=False))


SHIPPED_PHONES = ("101", "102", "103")  # the demo's, written in asterisk-config/pjsip.conf
SIP_REALM = "asterisk"  # Asterisk's default realm: the digest a phone's md5_cred is made for
EXTENSION = re.compile(r"^1[0-9]{2,3}$")  # what [from-phones] dials between phones (_1XX, _1XXX)


@dataclass(frozen=True, slots=True)
class DeskPhone:
    extension: str
    label: str = ""
    queues: tuple[str, ...] = ()
    md5_cred: str = ""  # "" until a password is made
    branch: int | None = None
    secure: bool = False  # SIP over TLS and SRTP (#30)
    browser: bool = False  # a user's phone in the browser (#34): WebRTC over the panel's WebSocket


def md5_cred(extension: str, password: str) -> str:
    """What Asterisk's ``auth_type = md5`` compares a phone's digest with."""
    return hashlib.md5(f"{extension}:{SIP_REALM}:{password}".encode()).hexdigest()  # noqa: S324 - SIP digest


def phone_label(text: str) -> str:
    """A phone's name, shown on colleagues' phones and written into a config: letters, digits,
    spaces, . and - only, up to 40."""
    return " ".join(re.sub(r"[^\w .-]", " ", text, flags=re.UNICODE).split())[:40]


def check_phone(form: Mapping[str, str], queues: Mapping[str, str] = QUEUE_NAMES, *,
                browser: bool = False) -> DeskPhone:
    """A desk phone from the panel's form; ``browser``: a browser phone's queues and branch
    (its number is one of 1900-1999, which a desk phone may not take)."""
    extension = _text(form, "extension")
    if not EXTENSION.match(extension):
        raise TelephonyError("extension", "Внутренний номер: 100–199 или 1000–1999 (их набирают коллеги)")
    if extension in SHIPPED_PHONES:
        raise TelephonyError("extension", f"Номер {extension} занят телефоном демо-клиники")
    if is_browser_extension(extension) != browser:
        raise TelephonyError("extension", "Номера 1900–1999 получают телефоны в браузере")
    label = phone_label(_text(form, "label"))
    chosen = tuple(q for q in queues if q in str(form.get("queues") or "").split(","))
    return DeskPhone(extension, label, chosen, secure=_flag(form, "secure", default=False))


@dataclass(frozen=True, slots=True)
class BranchOut:
    """How a branch's desk phones call out: by its provider (None: the clinic's outgoing one)
    and showing its clinic number ("" : ``asterisk.outbound_line``)."""

    branch: int
    provider: int | None = None
    line: str = ""


def on_box(items: Iterable[Any], box_branches: Iterable[int]) -> list[Any]:
    """What a chain's box renders: the rows of its branches and the rows of no branch (one
    clinic, one box: every row)."""
    wanted = set(box_branches)
    return [x for x in items if not wanted or x.branch is None or x.branch in wanted]


def check_branch_out(form: Mapping[str, str], branch: int, providers: Iterable[Provider],
                     lines: Iterable[str]) -> BranchOut:
    """A branch's outgoing provider and caller ID from the panel: both chosen from lists."""
    raw = _text(form, "out_provider")
    known = {p.id for p in providers}
    if raw and not (raw.isdigit() and int(raw) in known):
        raise TelephonyError("out_provider", "Провайдер для исходящих: выберите из списка")
    line = normalize_did(_text(form, "out_line")) if _text(form, "out_line") else ""
    if line and line not in set(lines):
        raise TelephonyError("out_line", "Номер для исходящих: один из номеров клиники")
    return BranchOut(branch, int(raw) if raw else None, line)

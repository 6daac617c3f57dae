"""Small helpers the panel's pages share: who is asking, their role, the clinic's clock."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web
from yarl import URL

from crm import audit
from pbx.services import SERVICES
from web.security import client_of, current_user

SETTINGS_ROLES = ("settings_admin", "director")
ROLE_LABELS = {"administrator": "Администратор", "director": "Директор",
               "settings_admin": "Администратор настроек"}
LINKEDID_CHARS = frozenset("0123456789.abcdefmanul-")
# a row id in a path: at most 18 digits, so it always fits SQLite's 64-bit integer (a longer
# one is simply no such page: 404, never an overflow)
ROW_ID = r"\d{1,18}"


@dataclass(frozen=True)
class Viewer:
    user_id: int
    name: str
    role: str
    history: str  # none | read | edit
    appeals: bool = False  # the «История обращений» right


async def viewer(request: web.Request) -> Viewer:
    """The logged-in user, as the session middleware loaded them from the database."""
    user = await current_user(request)
    if user is None:
        raise web.HTTPFound("/login")
    return Viewer(user.user_id, user.name, user.role, user.history, user.appeals)


async def require_settings(request: web.Request) -> Viewer:
    v = await viewer(request)
    if v.role not in SETTINGS_ROLES:
        raise web.HTTPForbidden(text="Нужны права администратора настроек")
    return v


def clinic_tz(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[SERVICES].settings.time_zone)


def now_ts(request: web.Request) -> float:
    return request.app[SERVICES].clock.now()


def local_now(request: web.Request) -> datetime:
    return datetime.fromtimestamp(now_ts(request), clinic_tz(request))


def local_today(request: web.Request) -> date:
    return local_now(request).date()


WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")


def day_label(day: date) -> str:
    """``воскресенье, 22.11.2026``: how the schedule names a day."""
    return f"{WEEKDAYS[day.weekday()]}, {day.strftime('%d.%m.%Y')}"


def local_time(iso_utc: str, tz: ZoneInfo) -> str:
    """A stored ISO UTC instant as the clinic's wall clock: ``2026-11-20 14:05:09``."""
    # isoformat, not strftime: a fifth of the cost, and a month's CSV formats 80 000 of them
    return datetime.fromisoformat(iso_utc).astimezone(tz).isoformat(" ", "seconds")[:19]


def clean_linkedid(text: str | None) -> str | None:
    """A call reference from a form or a link: Asterisk's "1732000000.42" or "manual-<hex>"."""
    if not text or len(text) > 40 or not set(text) <= LINKEDID_CHARS:
        return None
    return text


def int_or_none(text: object) -> int | None:
    try:
        value = int(str(text))
    except (TypeError, ValueError):
        return None
    return value if 0 < value < 2**62 else None


def csv_lines(rows: Iterable[Iterable[object]]) -> str:
    """Rows as the panel's CSV writes them: ``;``-separated (Excel in a Russian locale)."""
    out = io.StringIO()
    csv.writer(out, delimiter=";").writerows(rows)
    return out.getvalue()


def csv_response(rows: Iterable[Iterable[object]], filename: str) -> web.Response:
    """A CSV download Excel opens right: ``;``-separated, UTF-8 with a BOM for the Cyrillic."""
    return web.Response(
        body=("\ufeff" + csv_lines(rows)).encode(), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(text: str) -> str:
    """A cell starting with = + - @ (or a tab or line break before one) would run as a
    formula in a spreadsheet: prefix it with an apostrophe (OWASP's CSV injection advice)."""
    return "'" + text if text[:1] in FORMULA_STARTS else text


async def trace(request: web.Request, action: str, object_kind: str = "", object_id: object = "",
                detail: str = "") -> None:
    """Put what the logged-in user opened or changed into the audit trail."""
    me = await viewer(request)
    services = request.app[SERVICES]
    await audit.record(services.db, me.name, action, services.clock.now(), user_id=me.user_id,
                       object_kind=object_kind, object_id=object_id, detail=detail,
                       address=client_of(request))


def money(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ") + " ₽"


def safe_back(target: object, default: str) -> str:
    """A redirect target from a form: only a path of our own site. Parsed first, then checked:
    a browser drops tabs and line breaks and reads a backslash as a slash, so "/\\evil" or
    "/\t/evil" would leave the site."""
    text = str(target or "")
    if not text or any(ord(ch) < 0x20 or ch == "\\" for ch in text):
        return default
    try:
        url = URL(text)
    except ValueError:
        return default
    if url.scheme or url.host or url.is_absolute() or not url.raw_path.startswith("/") \
            or url.raw_path.startswith("//"):
        return default
    return url.raw_path + (f"?{url.raw_query_string}" if url.raw_query_string else "")

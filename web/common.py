"""Small helpers the panel's pages share: who is asking, their role, the clinic's clock."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import get_session

from pbx.app import SERVICES

SETTINGS_ROLES = ("settings_admin", "director")
ROLE_LABELS = {"administrator": "Администратор", "director": "Директор",
               "settings_admin": "Администратор настроек"}
LINKEDID_CHARS = frozenset("0123456789.abcdefmanul-")


@dataclass(frozen=True)
class Viewer:
    user_id: int
    name: str
    role: str
    history: str  # none | read | edit


async def viewer(request: web.Request) -> Viewer:
    session = await get_session(request)
    user_id = int(session.get("user_id", 0))
    row = await request.app[SERVICES].db.fetchone(
        "SELECT full_name, login, role, history_access FROM users WHERE id = ? AND active = 1", (user_id,)
    )
    if row is None:
        raise web.HTTPFound("/login")
    return Viewer(user_id, row[0] or row[1], row[2], row[3])


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
    return datetime.fromisoformat(iso_utc).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


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


def csv_response(rows: Iterable[Iterable[object]], filename: str) -> web.Response:
    """A CSV download Excel opens right: ``;``-separated, UTF-8 with a BOM for the Cyrillic."""
    out = io.StringIO()
    csv.writer(out, delimiter=";").writerows(rows)
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode(), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def csv_safe(text: str) -> str:
    """A value starting with = + - @ would run as a formula in a spreadsheet."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def money(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ") + " ₽"

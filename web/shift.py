"""The shift phone: which desk phone the logged-in administrator works on today."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from crm import directory, shifts
from pbx.services import SERVICES
from web.common import local_today, viewer
from web.live import LIVE_HUB

NONE = "none"  # "Не работаю сейчас с телефонией"
EXEMPT = ("/shift", "/login", "/logout", "/password", "/static/", "/api/", "/live", "/e/", "/provision/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def today(request: web.Request) -> str:
    """The clinic's day (its time zone, the injected clock): in Moscow the shift question
    comes at midnight, not at 03:00 when the UTC date turns."""
    return local_today(request).isoformat()


@web.middleware
async def shift_first(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On the first page of the day, ask which phone this shift uses."""
    if request.method == "GET" and not request.path.startswith(EXEMPT):
        session = await get_session(request)
        if session.get("user_id") and session.get("shift_day") != today(request):
            raise web.HTTPFound("/shift")
    return await handler(request)


async def phones_with_holders(request: web.Request) -> list[dict[str, object]]:
    return await directory.desk_phones_with_holders(request.app[SERVICES].db)


@aiohttp_jinja2.template("shift.html")
async def shift_form(request: web.Request) -> dict[str, object]:
    session = await get_session(request)
    user_id = int(session["user_id"])
    phones = await phones_with_holders(request)
    current = await shifts.current_extension(request.app[SERVICES].db, user_id)
    return {"phones": phones, "current": current, "me": user_id, "error": None}


async def shift_submit(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    user_id = int(session["user_id"])
    choice = str((await request.post()).get("extension", ""))
    phones = await phones_with_holders(request)
    known = {str(p["extension"]) for p in phones}
    if choice != NONE and choice not in known:
        return aiohttp_jinja2.render_template(
            "shift.html", request,
            {"phones": phones, "current": None, "me": user_id, "error": "Выберите телефон из списка"},
            status=400,
        )
    db = request.app[SERVICES].db
    result = await shifts.bind(db, user_id, None if choice == NONE else choice, db.stamp())
    if result.displaced_user is not None:
        name = (await viewer(request)).name
        request.app[LIVE_HUB].notify_user(
            result.displaced_user, f"Телефон {choice} выбрал(а) {name}. Выберите другой телефон."
        )
    session["shift_day"] = today(request)
    raise web.HTTPFound("/")

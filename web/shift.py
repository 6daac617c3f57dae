"""The shift phone: which desk phone the logged-in administrator works on today."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from crm import directory, shifts, telephony
from crm.rules import browser_phone
from crm.rules.queues import queue_choices
from pbx.services import SERVICES
from web.browser_phone import PHONE_SECRET
from web.common import local_today, viewer
from web.live import LIVE_HUB
from web.telephony_page import apply_now

NONE = "none"  # "Не работаю сейчас с телефонией"
EXEMPT = ("/shift", "/login", "/logout", "/password", "/static/", "/api/", "/live", "/e/", "/provision/", "/phone/")
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
    """The desk phones a shift may choose (the users' browser phones are each their own)."""
    return [p for p in await directory.desk_phones_with_holders(request.app[SERVICES].db)
            if p["browser_user_id"] is None]


@aiohttp_jinja2.template("shift.html")
async def shift_form(request: web.Request) -> dict[str, object]:
    session = await get_session(request)
    user_id = int(session["user_id"])
    phones = await phones_with_holders(request)
    current = await shifts.current_extension(request.app[SERVICES].db, user_id)
    if current is not None and browser_phone.is_browser_extension(current):
        current = browser_phone.CHOICE
    return {"phones": phones, "current": current, "me": user_id, "error": None}


async def shift_submit(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    user_id = int(session["user_id"])
    choice = str((await request.post()).get("extension", ""))
    phones = await phones_with_holders(request)
    known = {str(p["extension"]) for p in phones}
    if choice == browser_phone.CHOICE:
        return await _browser_shift(request, session, user_id)
    if choice != NONE and choice not in known:
        return aiohttp_jinja2.render_template(
            "shift.html", request,
            {"phones": phones, "current": None, "me": user_id, "error": "Выберите телефон из списка"},
            status=400,
        )
    db = request.app[SERVICES].db
    if session.pop(PHONE_SECRET, None):  # the browser is left for a desk phone: its password ends
        await telephony.close_browser_phone(db, user_id, request.app[SERVICES].clock.now())
    result = await shifts.bind(db, user_id, None if choice == NONE else choice, db.stamp())
    if result.displaced_user is not None:
        name = (await viewer(request)).name
        request.app[LIVE_HUB].notify_user(
            result.displaced_user, f"Телефон {choice} выбрал(а) {name}. Выберите другой телефон."
        )
    session["shift_day"] = today(request)
    raise web.HTTPFound("/")


async def _browser_shift(request: web.Request, session: Any, user_id: int) -> web.StreamResponse:
    """«Телефон в браузере»: the user's own endpoint with a new password for this login, kept in
    the session only (the page asks /phone/account for it), applied to Asterisk now."""
    services = request.app[SERVICES]
    me = await viewer(request)
    queues = tuple(queue_choices(await telephony.clinic_queues(services.db)))
    opened = await telephony.open_browser_phone(services.db, user_id, me.name, queues, services.clock.now())
    if opened is None:
        return aiohttp_jinja2.render_template(
            "shift.html", request,
            {"phones": await phones_with_holders(request), "current": None, "me": user_id,
             "error": "Все 100 номеров телефонов в браузере заняты: удалите ненужные в «Телефонии»"}, status=409)
    extension, password = opened
    await shifts.bind(services.db, user_id, extension, services.db.stamp())
    session[PHONE_SECRET] = {"extension": extension, "password": password}
    session["shift_day"] = today(request)
    await apply_now(services)
    raise web.HTTPFound("/")

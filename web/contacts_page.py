"""«Сотрудники и контрагенты» (seed 001): who they are and their numbers, so their calls are
typed automatically and stay out of the patient statistics. Any member of staff may read it;
the settings admin and the director change it."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import contacts
from pbx.services import SERVICES
from web.common import int_or_none, require_settings, trace


async def _page(request: web.Request, error: str | None = None) -> dict[str, Any]:
    return {"people": await contacts.listing(request.app[SERVICES].db), "kinds": contacts.KINDS, "error": error}


@aiohttp_jinja2.template("contacts.html")
async def contacts_page(request: web.Request) -> dict[str, Any]:
    return await _page(request)


async def contacts_submit(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    form = await request.post()
    db = request.app[SERVICES].db
    action, kind = str(form.get("action", "")), str(form.get("kind", ""))
    owner = int_or_none(form.get("owner"))
    try:
        if action == "add":
            owner = await contacts.add(db, kind, str(form.get("name", "")), str(form.get("phone", "")),
                                       str(form.get("detail", "")))
        elif action == "add_phone" and owner is not None:
            await contacts.add_phone(db, kind, owner, str(form.get("phone", "")))
        elif action == "remove_phone" and owner is not None:
            await contacts.remove_phone(db, kind, owner, str(form.get("phone", "")))
        else:
            raise ValueError("Неверный запрос")
    except ValueError as exc:
        return aiohttp_jinja2.render_template("contacts.html", request, await _page(request, str(exc)), status=400)
    await trace(request, "settings_update", "contacts", f"{kind}:{owner}", action)
    raise web.HTTPFound("/contacts")

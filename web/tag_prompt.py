"""The post-call tag pop-up (seed 000), driven by cards.js when the user's call ends: it asks
whether to show, then saves the chosen tags once, or records that it was closed unsaved."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crm import call_listing, calls, phones, shifts, tags
from crm.tags import TagError
from pbx.services import SERVICES
from web.common import Viewer, clean_linkedid, now_ts, viewer


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="Неверный запрос") from None
    if not isinstance(body, dict) or clean_linkedid(str(body.get("call", ""))) is None:
        raise web.HTTPBadRequest(text="Неверный запрос")
    return body


async def allowed(request: web.Request, linkedid: str) -> Viewer:
    """The caller may tag this call (crm.calls.may_tag), or the request ends in a 403/404.
    The pop-up comes as the card ends, a moment before the call is written: wait for it."""
    services = request.app[SERVICES]
    me = await viewer(request)
    if services.calls is not None:
        try:
            await services.calls.flush(timeout=3.0)
        except TimeoutError:
            pass
    exists, took_part = await calls.participation(services.db, linkedid, me.user_id)
    if not exists:
        raise web.HTTPNotFound(text="Нет такого звонка")
    if not calls.may_tag(exists, took_part, me.history):
        raise web.HTTPForbidden(text="Метки ставит тот, кто разговаривал, или тот, кто может править историю")
    return me


async def prompt(request: web.Request) -> web.Response:
    """``POST /tags/prompt {call, phone, since}``: the groups to show, or ``show: false``."""
    body = await _body(request)
    db = request.app[SERVICES].db
    linkedid = str(body["call"])
    me = await allowed(request, linkedid)
    if await shifts.current_extension(db, me.user_id) is None:
        return web.json_response({"show": False})
    try:
        since = float(body.get("since", 0))
    except (TypeError, ValueError):
        since = 0.0
    # the pop-up comes as the call ends: "now" is its end
    converted = await call_listing.converted_live(db, linkedid, phones.normalize(str(body.get("phone", ""))), since,
                                           now_ts(request))
    if not await tags.should_prompt(db, linkedid, converted):
        return web.json_response({"show": False})
    await tags.mark_prompted(db, linkedid, me.user_id)
    return web.json_response({"show": True, "groups": await tags.groups(db), "other": tags.OTHER})


async def save(request: web.Request) -> web.Response:
    body = await _body(request)
    me = await allowed(request, str(body["call"]))
    raw = body.get("tags") or []
    if not isinstance(raw, list) or not all(isinstance(t, int) for t in raw):
        return web.json_response({"error": "Неверный запрос"}, status=400)
    try:
        await tags.set_tags(request.app[SERVICES].db, str(body["call"]), raw,
                            str(body.get("other", "")), me.user_id)
    except TagError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


async def dismiss(request: web.Request) -> web.Response:
    body = await _body(request)
    me = await allowed(request, str(body["call"]))
    await tags.dismiss(request.app[SERVICES].db, str(body["call"]), me.user_id)
    return web.json_response({"ok": True})

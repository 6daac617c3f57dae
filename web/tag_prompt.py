"""The post-call tag pop-up (seed 000), driven by cards.js when the user's call ends: it asks
whether to show, then saves the chosen tags once, or records that it was closed unsaved."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crm import calls, phones, shifts, tags
from crm.tags import TagError
from pbx.app import SERVICES
from web.common import clean_linkedid, viewer


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="Неверный запрос") from None
    if not isinstance(body, dict) or clean_linkedid(str(body.get("call", ""))) is None:
        raise web.HTTPBadRequest(text="Неверный запрос")
    return body


async def prompt(request: web.Request) -> web.Response:
    """``POST /tags/prompt {call, phone, since}``: the groups to show, or ``show: false``."""
    body = await _body(request)
    db = request.app[SERVICES].db
    me = await viewer(request)
    linkedid = str(body["call"])
    if await shifts.current_extension(db, me.user_id) is None:
        return web.json_response({"show": False})
    try:
        since = float(body.get("since", 0))
    except (TypeError, ValueError):
        since = 0.0
    converted = await calls.converted_live(db, linkedid, phones.normalize(str(body.get("phone", ""))), since)
    if not await tags.should_prompt(db, linkedid, converted):
        return web.json_response({"show": False})
    await tags.mark_prompted(db, linkedid, me.user_id)
    return web.json_response({"show": True, "groups": await tags.groups(db), "other": tags.OTHER})


async def save(request: web.Request) -> web.Response:
    body = await _body(request)
    me = await viewer(request)
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
    me = await viewer(request)
    await tags.dismiss(request.app[SERVICES].db, str(body["call"]), me.user_id)
    return web.json_response({"ok": True})

"""The "Добавление комментария к разговору" window (seed 001): during a call from its card,
later from the history, or for a manual entry of a call to a mobile. "Сохранить и записать"
saves and opens booking for the chosen patient with the call attached."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import call_listing, clinic_settings, comments, context, patients, shifts
from crm.comments import CommentError
from crm.dates import parse_moment
from pbx.services import SERVICES
from web.common import (
    Viewer,
    clean_linkedid,
    clinic_tz,
    int_or_none,
    local_now,
    local_time,
    local_today,
    now_ts,
    viewer,
)
from web.live import LIVE_HUB


async def _call_view(request: web.Request, linkedid: str, me: Viewer) -> dict[str, Any]:
    """The call as stored, or as its live card on the viewer's phone. A stored call needs the
    history edit right unless the viewer took part in it."""
    services = request.app[SERVICES]
    stored = await call_listing.get_call_by_linkedid(services.db, linkedid)
    if stored is not None:
        took_part = me.user_id in (stored["answered_by_user"], stored["originated_by"]) or any(
            leg["user_id"] == me.user_id for leg in stored["legs"]
        )
        # one's own call (the window opened while talking, saved after the hang-up) is one's
        # own to comment; anyone else's needs the history edit right
        if me.history != "edit" and not took_part:
            raise web.HTTPForbidden(text="Нет права редактировать историю звонков")
        return {"linkedid": linkedid, "phone": stored["phone_e164"] or stored["caller_raw"],
                "when": local_time(stored["started_at"], clinic_tz(request)), "live": False,
                "kind": stored["caller_kind"], "patients": stored["patients"]}
    extension = await shifts.current_extension(services.db, me.user_id)
    live = services.calls.live.get(extension or "", {}).get(linkedid) if services.calls else None
    if live is None:
        raise web.HTTPNotFound(text="Нет такого звонка")
    card = await request.app[LIVE_HUB].card(live)  # the same caller identification as the card shows
    return {"linkedid": linkedid, "phone": card["phone"], "when": "сейчас", "live": True,
            "kind": card["kind"], "patients": card["patients"]}


async def _page(request: web.Request, linkedid: str, values: Any, error: str | None) -> dict[str, Any]:
    db = request.app[SERVICES].db
    me = await viewer(request)
    call = await _call_view(request, linkedid, me)
    existing = await comments.get_comment(db, linkedid)
    patient_id = int_or_none(values.get("patient")) or (existing or {}).get("patient_id")
    if patient_id is None and len(call["patients"]) == 1:
        patient_id = call["patients"][0]["id"]
    ctx = None
    if patient_id:
        try:
            ctx = await context.context(db, patient_id, today=local_today(request), now=now_ts(request))
        except KeyError:
            patient_id = None
    caller_type = values.get("caller_type") or (existing or {}).get("caller_type") or \
        comments.default_caller_type(call["kind"], bool(ctx and ctx["future"]))
    # seed 001: typing a surname in «Кто» looks through the whole database, not only the number's
    find = str(values.get("find") or "").strip()[:100]
    return {
        "find": find, "found": await patients.search(db, find, limit=20) if find else [],
        "call": call, "ctx": ctx, "patient_id": patient_id, "caller_types": await comments.caller_types(db),
        "caller_type": caller_type, "topics": await comments.topics(db),
        "topic_id": int_or_none(values.get("topic")) or (existing or {}).get("topic_id"),
        "text": values.get("text") or (existing or {}).get("text", ""), "error": error,
        "joined": request.query.get("joined") == "1",
    }


@aiohttp_jinja2.template("comment.html")
async def comment_form(request: web.Request) -> dict[str, Any]:
    linkedid = clean_linkedid(request.query.get("call"))
    if linkedid is None:
        raise web.HTTPNotFound(text="Нет такого звонка")
    return await _page(request, linkedid, request.query, None)


async def comment_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    linkedid = clean_linkedid(str(form.get("call", "")))
    if linkedid is None:
        raise web.HTTPNotFound(text="Нет такого звонка")
    me = await viewer(request)
    await _call_view(request, linkedid, me)  # rights
    patient_id = int_or_none(form.get("patient"))
    try:
        await comments.save_comment(
            request.app[SERVICES].db, linkedid, caller_type=str(form.get("caller_type", "")),
            topic_id=int_or_none(form.get("topic")), patient_id=patient_id,
            text=str(form.get("text", "")), user_id=me.user_id,
            contractor_name=str(form.get("contractor_name", ""))[:100],
        )
    except CommentError as exc:
        values = {k: str(v) for k, v in form.items()}
        return aiohttp_jinja2.render_template(
            "comment.html", request, await _page(request, linkedid, values, str(exc)), status=400
        )
    if form.get("action") == "book":
        raise web.HTTPFound(f"/booking?call={linkedid}" + (f"&patient={patient_id}" if patient_id else ""))
    raise web.HTTPFound("/calls" if me.history in ("read", "edit") else "/")


@aiohttp_jinja2.template("manual_call.html")
async def manual_form(request: web.Request) -> dict[str, Any]:
    me = await viewer(request)
    if me.history != "edit":
        raise web.HTTPForbidden(text="Нет права редактировать историю звонков")
    return {"error": None, "form": {"when": local_now(request).strftime("%d.%m.%Y %H:%M")}, "channels": comments.MANUAL_CHANNELS,
            "link_minutes": await clinic_settings.get(request.app[SERVICES].db, "comment_link_minutes")}


async def manual_submit(request: web.Request) -> web.StreamResponse:
    me = await viewer(request)
    if me.history != "edit":
        raise web.HTTPForbidden(text="Нет права редактировать историю звонков")
    form = await request.post()
    db = request.app[SERVICES].db
    window = 60 * float(await clinic_settings.get(db, "comment_link_minutes") or 5)
    try:
        try:
            started = parse_moment(str(form.get("when", ""))).replace(tzinfo=clinic_tz(request))
            minutes = float(str(form.get("minutes", "0")).replace(",", "."))
        except ValueError:
            raise CommentError("Неверные дата или длительность") from None
        linkedid, joined = await comments.add_manual_call(
            db, direction=str(form.get("direction", "")), phone=str(form.get("phone", ""))[:30], started=started,
            minutes=minutes, user_id=me.user_id, kind=str(form.get("kind", "comment")), link_window=window,
            channel=str(form.get("channel", "")) if form.get("kind") == "dialog" else "",
        )
    except CommentError as exc:
        return aiohttp_jinja2.render_template(
            "manual_call.html", request, {"error": str(exc), "form": form, "link_minutes": window / 60,
                                          "channels": comments.MANUAL_CHANNELS}, status=400
        )
    raise web.HTTPFound(f"/comment?call={linkedid}" + ("&joined=1" if joined else ""))


async def incoming_calls(request: web.Request) -> web.StreamResponse:
    """Seed 001's «Входящие звонки» button: the comment window of the call ringing (or being
    talked on) at my phone right now — the newest one when several ring."""
    me = await viewer(request)
    services = request.app[SERVICES]
    extension = await shifts.current_extension(services.db, me.user_id)
    live = services.calls.live.get(extension or "", {}) if services.calls else {}
    current = [c for c in live.values() if c.status in ("ringing", "talking", "on_hold")]
    if not current:
        raise web.HTTPFound("/?no_call=1")
    newest = max(current, key=lambda c: (c.status != "ringing", c.since))  # talking first, then the latest
    raise web.HTTPFound(f"/comment?call={newest.linkedid}")

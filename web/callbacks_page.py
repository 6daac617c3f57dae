"""«Обратные звонки» in the panel (seed 003): a day's requests with their state (актуальная /
закрыта / просрочена), every attempt (when, who answered, where it failed, the talk, the
recording and the call), the next attempt and why it waits; a request typed in by hand
(«Заявка-диалог»); closing one by hand; and the robot's settings and sources."""

from __future__ import annotations

import secrets
from datetime import date, datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import callbacks, directory, mail, phones
from crm.dates import parse_day
from crm.rules import callback as cr
from pbx.services import SERVICES
from web.callback_api import clean
from web.common import (
    SETTINGS_ROLES,
    clinic_tz,
    int_or_none,
    local_today,
    now_ts,
    require_settings,
    trace,
    viewer,
)

SOURCE_BY_HAND = "администратора"  # «Заявка на запись с администратора» — a request typed in the panel
SETTING_FIELDS = ("clinic_target", "queue", "caller_id", "ring_clinic_seconds", "ring_patient_seconds",
                  "key_wait_seconds", "prompt_repeats", "retry_minutes", "give_up_minutes", "sms_after",
                  "max_concurrent_calls", "opens", "closes", "closed_days", "week", "emails", "mail_from", "clinic_phone")


def setup_callbacks_page(app: web.Application) -> None:
    app.router.add_get("/callbacks", callbacks_page)
    app.router.add_post("/callbacks/new", request_submit)
    app.router.add_post(r"/callbacks/{id:\d{1,18}}/close", close_submit)
    app.router.add_post("/callbacks/settings", settings_submit)
    app.router.add_post("/callbacks/sources", source_submit)


def _day(request: web.Request) -> date:
    try:
        return parse_day(request.query.get("day", "")) if request.query.get("day") else local_today(request)
    except ValueError:
        return local_today(request)


@aiohttp_jinja2.template("callbacks.html")
async def callbacks_page(request: web.Request) -> dict[str, Any]:
    me = await viewer(request)
    services = request.app[SERVICES]
    tz, day = clinic_tz(request), _day(request)
    since = datetime.combine(day, time(0), tz).timestamp()
    state = request.query.get("state", "")
    rows = await callbacks.list_requests(services.db, since, since + 86400, state)
    tries = await callbacks.attempts(services.db, [r["id"] for r in rows])
    today = local_today(request)
    for r in rows:
        created = datetime.fromtimestamp(r["created_ts"], tz).date()
        r["status"] = cr.request_status(r["state"], created, today)
        r["closed_as"] = cr.CLOSED_NAMES.get(r["outcome"], r["outcome"])
        r["tries"] = tries[r["id"]]
    branches = await directory.branches(services.db)
    branch = int_or_none(request.query.get("branch")) if request.query.get("branch") else None
    if branch is not None and branch not in {b["id"] for b in branches}:
        branch = None
    s = await callbacks.settings(services.db, branch)
    can_edit = me.role in SETTINGS_ROLES
    names = {b["id"]: b["name"] for b in branches}
    for r in rows:
        r["branch_name"] = names.get(r["branch_id"], "")
    return {
        "branches": branches, "branch": branch,
        "day": day.isoformat(), "prev": (day - timedelta(days=1)).isoformat(),
        "next": (day + timedelta(days=1)).isoformat(), "state": state, "requests": rows, "tz": tz,
        "outcomes": cr.OUTCOME_NAMES, "closed_names": cr.CLOSED_NAMES, "settings": s, "can_edit": can_edit,
        "sources": await callbacks.sources(services.db) if can_edit else [],
        "robot": services.callbacks is not None and services.ari is not None and services.ari.connected.is_set(),
        "mail_ready": bool(services.settings.mail.host) or services.settings.mail.demo,
        "no_letters": cr.letters_unaddressed(s),
        "letters": await mail.recent(services.db, 10) if can_edit else [],
        "counts": await callbacks.counts(services.db, since, since + 86400),
    }


async def request_submit(request: web.Request) -> web.StreamResponse:
    """«Заявка-диалог»: an administrator enters a request (a chat, a letter, a note)."""
    me = await viewer(request)
    form = await request.post()
    if refused := phones.extension_refused(clean(form.get("phone"), 40)):
        raise web.HTTPBadRequest(text=refused)
    phone = phones.normalize(clean(form.get("phone"), 40))
    if phone is None:
        raise web.HTTPBadRequest(text="Неверный номер телефона")
    services = request.app[SERVICES]
    branch = await _branch(request, form.get("branch"))
    intake = await callbacks.create_request(services.db, callbacks.NewRequest(
        phone=phone, source_name=SOURCE_BY_HAND, branch_id=branch, patient_name=clean(form.get("patient_name"), 200),
        doctor=clean(form.get("doctor"), 200), service=clean(form.get("service"), 200),
        desired=clean(form.get("desired"), 100), comment=clean(form.get("comment"), 1000),
        created_by=me.user_id), now_ts(request))
    await trace(request, "callback_request_added", "callback_request", intake.request_id)
    if services.callbacks is not None:
        services.callbacks.wake()
    raise web.HTTPFound("/callbacks")


async def close_submit(request: web.Request) -> web.StreamResponse:
    await viewer(request)
    request_id = int_or_none(request.match_info["id"])
    services = request.app[SERVICES]
    req = await callbacks.request(services.db, request_id) if request_id is not None else None
    if req is None:
        raise web.HTTPNotFound(text="Нет такой заявки")
    await callbacks.close(services.db, None, req["id"], cr.CLOSED_CANCELLED, "Закрыта в панели", now_ts(request))
    await trace(request, "callback_request_closed", "callback_request", req["id"])
    raise web.HTTPFound("/callbacks")


async def settings_submit(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    form = await request.post()
    values: dict[str, Any] = {k: str(form.get(k, "")) for k in SETTING_FIELDS if k in form}
    values["enabled"] = "enabled" in form
    branch = await _branch(request, form.get("branch"))
    await callbacks.save_settings(request.app[SERVICES].db, cr.CallbackSettings.from_dict(values), branch)
    await trace(request, "callback_settings", "settings", f"callback:{branch or ''}")
    raise web.HTTPFound("/callbacks" + (f"?branch={branch}" if branch else ""))


async def _branch(request: web.Request, value: object) -> int | None:
    """A branch id from a form, only if the clinic has it ("" or unknown: none)."""
    branch = int_or_none(value) if value else None
    if branch is None:
        return None
    if branch not in {b["id"] for b in await directory.branches(request.app[SERVICES].db)}:
        raise web.HTTPBadRequest(text="Нет такого филиала")
    return branch


async def source_submit(request: web.Request) -> web.StreamResponse:
    """A source that may send requests: its code, the name the robot says, and how it proves
    itself (a new secret or token is generated when asked; settings administrators see it on the page to
    give it to the site)."""
    await require_settings(request)
    form = await request.post()
    code = clean(form.get("code"), 60)
    spoken = clean(form.get("spoken_name"), 100)
    if not code or not code.replace("-", "").replace("_", "").isalnum() or not spoken:
        raise web.HTTPBadRequest(text="Нужны код источника (латиница, цифры) и название")
    db = request.app[SERVICES].db
    old = await callbacks.source(db, code) or {"secret": "", "token": ""}
    auth = str(form.get("auth", "keep"))
    secret = secrets.token_urlsafe(24) if auth == "secret" else ("" if auth == "token" else old["secret"])
    token = secrets.token_urlsafe(24) if auth == "token" else ("" if auth == "secret" else old["token"])
    await callbacks.save_source(db, code, spoken, secret=secret, token=token, enabled="enabled" in form,
                                branch_id=await _branch(request, form.get("branch")))
    await trace(request, "callback_source", "callback_source", code)
    raise web.HTTPFound("/callbacks")

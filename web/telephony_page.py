"""«Настройки → Телефония»: the clinic's SIP providers (issue #29), their live state as Asterisk
reports it, and whether the last change is applied. Settings admins and the director only;
every change audited; a refused value names its field."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import audit, providers
from crm.rules import telephony as rules
from pbx.services import SERVICES, Services
from web.common import clinic_tz, now_ts, require_settings
from web.security import client_of

APPLY_WAIT = 15.0  # how long a save waits for Asterisk's confirmation before showing the page


def _when(request: web.Request, ts: float | None) -> str:
    return datetime.fromtimestamp(ts, clinic_tz(request)).strftime("%d.%m %H:%M:%S") if ts else ""


async def state_of(services: Services) -> dict[str, Any]:
    """What the page, health and /metrics say about the telephony: only what Asterisk said."""
    worker = services.telephony
    revision = await providers.revision(services.db)
    if worker is None:
        return {"managed": False, "revision": revision, "applied": None, "error": "", "statuses": {}}
    state = worker.applier.state
    return {"managed": True, "revision": revision, "applied": state.revision == revision,
            "applied_at": state.applied_at, "error": state.error if state.failed_revision == revision else "",
            "statuses": worker.statuses()}


async def _page(request: web.Request, *, error: str = "", field: str = "", edit: rules.Provider | None = None,
                form: Any = None) -> dict[str, Any]:
    services = request.app[SERVICES]
    state = await state_of(services)
    return {
        "providers": await providers.all_providers(services.db), "state": state,
        "applied_at": _when(request, state.get("applied_at")),
        "since": {pid: _when(request, s.since) for pid, s in state["statuses"].items()},
        "error": error, "field": field, "edit": edit, "form": form or {},
        "auth_modes": rules.AUTH_MODES, "transports": rules.TRANSPORTS, "did_places": rules.DID_PLACES,
        "dtmf_modes": rules.DTMF_MODES, "codecs": rules.CODECS,
    }


@aiohttp_jinja2.template("telephony.html")
async def telephony_page(request: web.Request) -> dict[str, Any]:
    await require_settings(request)
    edit = None
    if request.query.get("provider", "").isdigit():
        edit = await providers.provider(request.app[SERVICES].db, int(request.query["provider"]))
    return await _page(request, edit=edit)


async def _apply_now(services: Services) -> None:
    """Apply the saved change at once (the worker would at its next tick) and wait for
    Asterisk's answer, so the page shows «применено» or Asterisk's error, not a guess."""
    if services.telephony is not None:
        try:
            await asyncio.wait_for(services.telephony.applier.apply_if_changed(), APPLY_WAIT)
            await services.telephony.refresh()
        except (TimeoutError, ConnectionError):
            pass  # the page says «не применено» and the worker retries


async def telephony_submit(request: web.Request) -> web.StreamResponse:
    me = await require_settings(request)
    services = request.app[SERVICES]
    form = await request.post()
    action, now = str(form.get("action", "")), now_ts(request)
    provider_id = int(str(form.get("provider") or 0)) if str(form.get("provider") or "0").isdigit() else 0
    try:
        if action == "provider_save":
            existing = await providers.provider(services.db, provider_id) if provider_id else None
            if provider_id and existing is None:
                raise rules.TelephonyError("name", "Нет такого провайдера")
            data = {k: str(v) for k, v in form.items()}
            place = data.get("did_from_place", rules.DID_IN_RURI)
            data["did_from"] = data.get("did_header", "") if place == "header" else place
            data["enabled"] = "1" if "enabled" in form else "0"
            data["qualify"] = "1" if "qualify" in form else "0"
            keep = bool(existing) and not data.get("password")
            if keep and existing is not None:
                data["password"] = existing.password  # the form never shows a password back
            p = rules.check_provider(data, provider_id)
            await providers.save_provider(services.db, p, now, actor=me.name, user_id=me.user_id, keep_password=keep)
        elif action == "provider_delete":
            await providers.delete_provider(services.db, provider_id, now, actor=me.name, user_id=me.user_id)
        elif action == "apply":
            if services.telephony is not None:
                services.telephony.applier.state.failed_revision = -1  # try the refused revision again
            await audit.record(services.db, me.name, "telephony_apply", now, user_id=me.user_id,
                               object_kind="telephony", address=client_of(request))
        else:
            raise rules.TelephonyError("", "Неизвестное действие")
    except rules.TelephonyError as exc:
        edit = await providers.provider(services.db, provider_id) if provider_id else None
        return aiohttp_jinja2.render_template(
            "telephony.html", request,
            await _page(request, error=str(exc), field=exc.field, edit=edit, form=form), status=400)
    await _apply_now(services)
    raise web.HTTPFound("/settings/telephony")

"""«Настройки → Телефония»: the clinic's SIP providers (issue #29), their live state as Asterisk
reports it, and whether the last change is applied. Settings admins and the director only;
every change audited; a refused value names its field."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import audit, directory, sip_bans
from crm import telephony as providers
from crm import toll as toll_store
from crm.rules import browser_phone, hours
from crm.rules import queues as queue_rules
from crm.rules import telephony as rules
from crm.rules import toll as toll_rules
from crm.secret_box import SecretBox
from pbx.services import SERVICES, Services
from web.common import clinic_tz, now_ts, require_settings

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


def _open_now(request: web.Request, n: dict[str, Any]) -> bool | None:
    """Is this number within its hours now (None: it has none, always open)?"""
    try:
        spans, days = hours.parse_hours(n["hours"]), hours.parse_holidays(n["holidays"])
    except hours.HoursError:
        return None
    return hours.is_open(spans, days, datetime.fromtimestamp(now_ts(request), clinic_tz(request))) if spans else None


async def phones_with_state(services: Services) -> list[dict[str, Any]]:
    """Every desk phone with its live state as Asterisk last reported it."""
    worker = services.telephony
    details = worker.contact_details if worker is not None else {}
    out = []
    for row in await directory.desk_phones_with_holders(services.db):
        ext = str(row["extension"])
        contact = details.get(ext, {})
        out.append({**row, "managed": ext not in rules.SHIPPED_PHONES, "dnd": worker is not None and ext in worker.dnd,
                    "online": contact.get("status") in (
            "Reachable", "NonQualified", "Unknown") and bool(contact), "contact": contact})
    return out


async def _page(request: web.Request, *, error: str = "", field: str = "", edit: rules.Provider | None = None,
                form: Any = None, action: str = "", secret: dict[str, str] | None = None) -> dict[str, Any]:
    """The page; after a refused form, that form (and only that one) shows what was typed."""
    services = request.app[SERVICES]
    state = await state_of(services)
    numbers = await directory.clinic_number_routes(services.db)
    for n in numbers:
        n["open_now"] = _open_now(request, n)
    wanted = request.query.get("number", "")
    panel_queues = await providers.clinic_queues(services.db)
    return {
        "providers": await providers.all_providers(services.db), "state": state,
        "applied_at": _when(request, state.get("applied_at")),
        "since": {pid: _when(request, s.since) for pid, s in state["statuses"].items()},
        "error": error, "field": field, "edit": edit,
        "form": form if form is not None and action == "provider_save" else {},
        "nform": form if form is not None and action == "number_save" else {},
        "auth_modes": rules.AUTH_MODES, "transports": rules.TRANSPORTS, "did_places": rules.DID_PLACES,
        "dtmf_modes": rules.DTMF_MODES, "codecs": rules.CODECS, "dial_formats": rules.DIAL_FORMATS,
        "numbers": numbers, "queues": queue_rules.queue_choices(panel_queues), "panel_queues": panel_queues,
        "strategies": queue_rules.STRATEGIES, "timeout_actions": queue_rules.TIMEOUT_ACTIONS,
        "edit_queue": next((q for q in panel_queues if str(q.id) == request.query.get("queue", "")), None),
        "edit_number": next((n for n in numbers if n["did"] == wanted), None),
        "branches": await directory.branches(services.db),
        "branch_outs": {o.branch: o for o in await providers.branch_outs(services.db)},
        "toll": await toll_store.policy(services.db), "toll_kinds": toll_rules.KINDS,
        "bans": [b | {"until": _when(request, b["until_ts"]), "since": _when(request, b["created_ts"])}
                 for b in await sip_bans.active(services.db, now_ts(request))],
        "security_emails": ", ".join(await toll_store.security_emails(services.db)),
        "phones": [{**p, "provisioned": _when(request, p["provisioned_at"])} for p in await phones_with_state(services)],
        "secret": secret,
        "sip_server": f"{services.settings.asterisk.phone_server or services.settings.asterisk.host}"
                      f":{services.settings.asterisk.sip_port}",
        "panel_host": request.host,
        "tls_port": services.settings.asterisk.tls_port or services.settings.asterisk.sip_port + 1,
    }


@aiohttp_jinja2.template("telephony.html")
async def telephony_page(request: web.Request) -> dict[str, Any]:
    await require_settings(request)
    edit = None
    if request.query.get("provider", "").isdigit():
        edit = await providers.provider(request.app[SERVICES].db, int(request.query["provider"]))
    return await _page(request, edit=edit)


async def apply_now(services: Services) -> None:
    """Apply the saved change at once (the worker would at its next tick) and wait for
    Asterisk's answer, so the page shows «применено» or Asterisk's error, not a guess."""
    if services.telephony is not None:
        try:
            await asyncio.wait_for(services.telephony.applier.apply_if_changed(), APPLY_WAIT)
            await services.telephony.refresh()
        except (TimeoutError, ConnectionError):
            pass  # the page says «не применено» and the worker retries


def _provider_id(form: Any) -> int:
    raw = str(form.get("provider") or "0")
    return int(raw) if raw.isdigit() else 0


async def _provider_save(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    provider_id = _provider_id(form)
    existing = await providers.provider(services.db, provider_id) if provider_id else None
    if provider_id and existing is None:
        raise rules.TelephonyError("name", "Нет такого провайдера")
    data = {k: str(v) for k, v in form.items()}
    place = data.get("did_from_place", rules.DID_IN_RURI)
    data["did_from"] = data.get("did_header", "") if place == "header" else place
    data["enabled"] = "1" if "enabled" in form else "0"
    data["qualify"] = "1" if "qualify" in form else "0"
    if existing is not None and not data.get("password"):
        data["password"] = existing.password  # the form never shows a password back: empty keeps it
    p = rules.check_provider(data, provider_id)
    await providers.save_provider(services.db, p, now, actor=me.name, user_id=me.user_id)
    return {}


async def _provider_delete(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    await providers.delete_provider(services.db, _provider_id(form), now, actor=me.name, user_id=me.user_id)
    return {}


async def _number_save(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    branch = str(form.get("branch") or "")
    known = queue_rules.queue_choices(await providers.clinic_queues(services.db))
    await providers.save_number(services.db, rules.check_number({k: str(v) for k, v in form.items()}, known), now,
                                branch_id=int(branch) if branch.isdigit() else None,
                                ad_channel=str(form.get("ad_channel") or ""), actor=me.name, user_id=me.user_id)
    return {}


async def _number_delete(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    await providers.delete_number(services.db, str(form.get("did") or ""), now, actor=me.name, user_id=me.user_id)
    return {}


async def _branch_out_save(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    raw = str(form.get("branch") or "")
    if not raw.isdigit():
        raise rules.TelephonyError("branch", "Нет такого филиала")
    out = rules.check_branch_out({k: str(v) for k, v in form.items()}, int(raw),
                                 await providers.all_providers(services.db),
                                 [n.did for n in await providers.numbers(services.db)])
    await providers.save_branch_out(services.db, out, now, actor=me.name, user_id=me.user_id)
    return {}


async def _toll_save(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    """The toll-fraud limits (#30): allowed kinds and countries, caps, who is told of a trip."""
    countries = [c.strip().upper() for c in str(form.get("toll_countries") or "").replace(" ", ",").split(",") if c.strip()]
    unknown = [c for c in countries if c not in toll_rules.known_countries(countries)]
    if unknown:
        raise rules.TelephonyError("toll_countries", f"Страны: двухбуквенные коды ISO (KZ, BY), не {unknown[0][:10]!r}")
    emails = tuple(e.strip() for e in str(form.get("security_emails") or "").replace(";", ",").split(",") if e.strip())
    if len(emails) > 5 or any(not EMAIL.match(e) for e in emails):
        raise rules.TelephonyError("security_emails", "Адреса для предупреждений: до пяти адресов через запятую")
    values = {"toll_kinds": ",".join(k for k in toll_rules.KINDS if k in form.getall("toll_kinds", []) and k != "premium"),
              "toll_countries": ",".join(countries),
              "toll_per_phone_hour": rules.form_int(form, "toll_per_phone_hour", 20, 0, 1000, "Звонков с телефона в час"),
              "toll_simultaneous": rules.form_int(form, "toll_simultaneous", 10, 0, 1000, "Исходящих одновременно")}
    await toll_store.save_policy(services.db, values, emails, now, actor=me.name, user_id=me.user_id)
    return {}


EMAIL = re.compile(r"^[^@\s,;<>\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}$")


async def _unban(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    await sip_bans.unban(services.db, str(form.get("address") or "")[:60], now, actor=me.name, user_id=me.user_id)
    return {}


async def _queue_save(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    raw = str(form.get("queue") or "")
    queue_id = int(raw) if raw.isdigit() else 0
    known = queue_rules.queue_choices(await providers.clinic_queues(services.db))
    q = queue_rules.check_queue({k: str(v) for k, v in form.items()}, queue_id, known)
    await providers.save_queue(services.db, q, now, actor=me.name, user_id=me.user_id)
    return {}


async def _queue_delete(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    raw = str(form.get("queue") or "")
    if raw.isdigit():
        await providers.delete_queue(services.db, int(raw), now, actor=me.name, user_id=me.user_id)
    return {}


async def _apply(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    if services.telephony is not None:
        services.telephony.applier.state.failed_revision = -1  # try the refused revision again
    await audit.record(services.db, me.name, "telephony_apply", now, user_id=me.user_id, object_kind="telephony")
    return {}


async def telephony_submit(request: web.Request) -> web.StreamResponse:
    me = await require_settings(request)
    services = request.app[SERVICES]
    form = await request.post()
    action, now = str(form.get("action", "")), now_ts(request)
    try:
        handler = ACTIONS.get(action)
        if handler is None:
            raise rules.TelephonyError("", "Неизвестное действие")
        secret = await handler(services, form, now, me)
        if secret:  # a phone's new password: shown once, on this page, never stored
            await apply_now(services)
            return aiohttp_jinja2.render_template("telephony.html", request, await _page(request, secret=secret))
    except rules.TelephonyError as exc:
        provider_id = _provider_id(form)
        edit = await providers.provider(services.db, provider_id) if provider_id else None
        return aiohttp_jinja2.render_template(
            "telephony.html", request,
            await _page(request, error=str(exc), field=exc.field, edit=edit, form=form, action=action), status=400)
    await apply_now(services)
    raise web.HTTPFound("/settings/telephony")


async def _phone_save(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    data = {k: str(v) for k, v in form.items()}
    data["queues"] = ",".join(str(q) for q in form.getall("queues", []))
    browser = browser_phone.is_browser_extension(data.get("extension", "").strip())
    phone = rules.check_phone(data, queue_rules.queue_choices(await providers.clinic_queues(services.db)),
                              browser=browser)
    branch = str(form.get("branch") or "")
    if browser:  # a user's phone in the browser (#34): only its queues and branch are the integrator's
        await providers.save_browser_phone(services.db, phone, now, branch_id=int(branch) if branch.isdigit() else None,
                                           actor=me.name, user_id=me.user_id)
        return {}
    secret = await providers.save_phone(services.db, phone, now, branch_id=int(branch) if branch.isdigit() else None,
                                        actor=me.name, user_id=me.user_id, box=_box(services))
    return _card(phone.extension, secret) if secret else {}


def _box(services: Services) -> SecretBox:
    return SecretBox(services.settings.asterisk.provisioning_key)


def _card(extension: str, secret: providers.PhoneSecret) -> dict[str, str]:
    """The one-time card: the password and the phone's provisioning path."""
    return {"extension": extension, "password": secret.password,
            "provision": f"/provision/{secret.token}/" if secret.token else ""}


async def _phone_password(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    ext = str(form.get("extension") or "")
    return _card(ext, await providers.reset_phone_password(services.db, ext, now, actor=me.name, user_id=me.user_id,
                                                           box=_box(services)))


async def _phone_dnd(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    """Do-not-disturb for a phone: it leaves the queues' ringing; colleagues hear busy."""
    ext, on = str(form.get("extension") or ""), str(form.get("on") or "") == "1"
    if not rules.EXTENSION.match(ext) or services.telephony is None or services.ami is None or not services.ami.connected:
        raise rules.TelephonyError("extension", "Нет связи с АТС: режим «не беспокоить» не переключить")
    await services.telephony.set_dnd(ext, on)
    await audit.record(services.db, me.name, "phone_dnd", now, user_id=me.user_id, object_kind="desk_phone",
                       object_id=ext, detail="включён" if on else "выключен")
    return {}


async def _phone_delete(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    await providers.delete_phone(services.db, str(form.get("extension") or ""), now, actor=me.name, user_id=me.user_id)
    return {}


async def _phone_ring(services: Services, form: Any, now: float, me: Any) -> dict[str, str]:
    """Ring the phone and say a test phrase when it is picked up (the robots' TTS)."""
    ext = str(form.get("extension") or "")
    worker = services.telephony
    if not ext.isdigit() or services.ami is None or not services.ami.connected or worker is None:
        raise rules.TelephonyError("extension", "Нет связи с АТС: позвонить нельзя")
    prompts = worker.applier.prompts
    sound = str(await prompts.path(TEST_PHRASE)) if prompts is not None else "beep"
    reply = await services.ami.action({"Action": "Originate", "Channel": f"PJSIP/{ext}", "Application": "Playback",
                                       "Data": sound, "CallerID": f'"Проверка" <{ext}>', "Timeout": "20000",
                                       "Async": "true"}, timeout=10)
    if str(dict(reply if not isinstance(reply, list) else reply[0]).get("Response")) != "Success":
        raise rules.TelephonyError("extension", f"Asterisk не позвонил на {ext}")
    return {}


TEST_PHRASE = "Проверка телефона. Телефон работает. Можно положить трубку."
ACTIONS = {"provider_save": _provider_save, "provider_delete": _provider_delete, "number_save": _number_save,
           "number_delete": _number_delete, "phone_save": _phone_save, "phone_password": _phone_password,
           "phone_delete": _phone_delete, "phone_dnd": _phone_dnd, "phone_ring": _phone_ring, "queue_save": _queue_save,
           "queue_delete": _queue_delete, "branch_out_save": _branch_out_save, "toll_save": _toll_save,
           "unban": _unban, "apply": _apply}

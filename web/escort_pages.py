"""Pre-visit escort in the panel: the campaign view (today's and tomorrow's jobs with
progress, outcomes and the reasons nothing was sent), the scenarios' settings, the three
reports; the gateways' webhooks (delivery states, patients' replies); and the patient's own
page behind the link in a message (confirm, cancel, pick another time)."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import directory, escort, escort_reports, phones, schedule, signatures
from crm.dates import parse_day
from crm.rules import escort as rules
from crm.rules.escort import EscortSettings
from crm.schedule import BookingError
from pbx.services import SERVICES
from web import charts
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

OUTCOMES = {
    "confirmed": "подтвердил", "reschedule": "просит перенести", "cancelled": "отменил",
    "no_key": "не нажал клавишу", "hangup": "положил трубку", "no_answer": "не ответил",
    "busy": "занято", "machine": "автоответчик", "failed": "ошибка звонка",
    "interrupted": "прерван перезапуском", "messages": "сообщение", "tts_failed": "нет озвучки",
    "not_started": "не начат (Asterisk отказал)",
}
STATES = {"pending": "в очереди", "running": "идёт", "done": "выполнено", "skipped": "не отправлено"}


def _secret(request: web.Request) -> str:
    return escort.link_secret(request.app[SERVICES].settings.web.cookie_secret)


def _day_range(request: web.Request, day: date) -> tuple[float, float]:
    tz = clinic_tz(request)
    start = datetime.combine(day, time(0), tz)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


@aiohttp_jinja2.template("escort.html")
async def campaign_page(request: web.Request) -> dict[str, Any]:
    me = await viewer(request)
    db = request.app[SERVICES].db
    today = local_today(request)
    days = []
    for day in (today, today + timedelta(days=1)):
        since, until = _day_range(request, day)
        jobs = await escort_reports.campaign(db, since, until)
        progress = {state: sum(1 for j in jobs if j["state"] == state) for state in STATES}
        chart = charts.bars([(label.capitalize(), progress[state], len(jobs)) for state, label in STATES.items()],
                            title="Ход сопровождения", first="Задач в этом состоянии",
                            second="Всего задач на день") if jobs else None
        days.append({"day": day.isoformat(), "jobs": jobs, "progress": progress, "chart": chart})
    return {"days": days, "scenarios": rules.SCENARIOS, "states": STATES, "outcomes": OUTCOMES,
            "settings": await escort.settings(db), "can_edit": me.role in ("settings_admin", "director"),
            "robot": request.app[SERVICES].robot is not None,
            "examples": await _examples(request, today + timedelta(days=1))}


async def _examples(request: web.Request, day: date) -> dict[str, list[tuple[str, str]]]:
    """Seed 002's «Примеры сообщений»: what each scenario sends, worded as for a real patient,
    with the branch's «Название в сообщениях»."""
    branches = await directory.branches(request.app[SERVICES].db)
    clinic = (branches[0]["message_name"] or branches[0]["name"]) if branches else "Клиника"
    w = rules.Wording("Анна", "Сергеевна", "Иванова Елена Петровна", "терапевт", clinic,
                      datetime.combine(day, time(10, 30), clinic_tz(request)))
    link = f"{request.app[SERVICES].settings.robot.public_url}/e/…"
    return {
        rules.DETAILS: [("WhatsApp / СМС", rules.message_text("details", w, link))],
        rules.CONFIRMATION: [("Робот говорит", rules.robot_text(w)),
                             ("WhatsApp / СМС", rules.message_text("confirm", w, link)),
                             ("Если пациент просит перенести", rules.message_text("reschedule_link", w, link))],
        rules.REMINDER: [("WhatsApp / СМС", rules.message_text("reminder", w, link))],
    }


async def settings_submit(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    form = await request.post()
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    for flag in ("details_enabled", "confirmation_enabled", "reminder_enabled", "amd"):
        values[flag] = flag in form  # type: ignore[assignment]
    await escort.save_settings(request.app[SERVICES].db, EscortSettings.from_dict(values))
    await trace(request, "escort_settings", "settings", "escort")
    if request.app[SERVICES].escort is not None:
        request.app[SERVICES].escort.wake()
    raise web.HTTPFound("/escort")


async def call_now(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    form = await request.post()
    appointment_id = int_or_none(form.get("appointment"))  # bounded: SQLite's integers are 64-bit
    now = now_ts(request)
    tz = clinic_tz(request)
    if appointment_id is not None and form.get("confirmed") != "1" and not rules.in_window(now, tz, rules.CALL_WINDOW):
        # the robot's hours are the clinic's promise to patients: at night, ask first
        return aiohttp_jinja2.render_template("call_now_confirm.html", request, {
            "appointment": appointment_id, "now": datetime.fromtimestamp(now, tz).strftime("%H:%M"),
            "window": rules.span(rules.CALL_WINDOW), "messages": rules.span(rules.MESSAGE_WINDOW)})
    try:
        if appointment_id is None:
            raise KeyError
        await escort.call_now(request.app[SERVICES].db, appointment_id, now)
    except KeyError:
        raise web.HTTPBadRequest(text="Нет такой записи") from None
    await trace(request, "escort_call_now", "appointment", appointment_id)
    if request.app[SERVICES].escort is not None:
        request.app[SERVICES].escort.wake()
    raise web.HTTPFound("/escort")


@aiohttp_jinja2.template("escort_reports.html")
async def reports_page(request: web.Request) -> dict[str, Any]:
    me = await viewer(request)
    if me.role not in SETTINGS_ROLES:
        raise web.HTTPForbidden(text="Отчёты доступны директору")
    today = local_today(request)
    try:
        since = parse_day(request.query["since"]) if request.query.get("since") else today - timedelta(days=7)
        until = parse_day(request.query["until"]) if request.query.get("until") else today + timedelta(days=1)
    except ValueError:
        raise web.HTTPBadRequest(text="Неверный период") from None
    scenario = request.query.get("scenario") or None
    if scenario not in (None, *rules.SCENARIOS):
        raise web.HTTPBadRequest(text="Неизвестный сценарий")
    db = request.app[SERVICES].db
    start, _ = _day_range(request, since)
    _, end = _day_range(request, until)
    write_offs = await escort_reports.report_write_offs(db, since.isoformat(), until.isoformat(), scenario)
    return {
        "since": since.isoformat(), "until": until.isoformat(), "scenario": scenario or "",
        "scenarios": rules.SCENARIOS, "channels": rules.CHANNELS, "outcomes": OUTCOMES,
        "appointments": await escort_reports.report_appointments(db, start, end, scenario),
        "volume": await escort_reports.report_volume(db, start, end, scenario),
        "write_offs": write_offs, "total": sum(w["amount"] for w in write_offs),
    }


# --- the gateways' webhooks ---------------------------------------------------------------
WEBHOOK_REPLAYS = web.AppKey("webhook_replays", signatures.ReplayGuard)


async def _json(request: web.Request) -> dict[str, Any]:
    """The gateway's signed JSON (crm.signatures: HMAC-SHA256 of timestamp and body with
    ``gateway.webhook_token``, 5 minutes' tolerance, each signature once)."""
    raw = await request.read()
    refused = signatures.check(
        request.app[SERVICES].settings.gateway.webhook_token, request.headers.get(signatures.TIMESTAMP_HEADER),
        request.headers.get(signatures.SIGNATURE_HEADER), raw, now_ts(request),
        request.app[WEBHOOK_REPLAYS])
    if refused is not None:
        raise web.HTTPUnauthorized(text=refused)
    try:
        body = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="JSON expected") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="JSON object expected")
    return body


async def gateway_status(request: web.Request) -> web.Response:
    """``POST /api/v1/gateway/status {"id": ..., "state": "delivered" | "undelivered"}``"""
    body = await _json(request)
    ok = await escort.delivery(request.app[SERVICES].db, str(body.get("id", ""))[:100], str(body.get("state", "")))
    return web.json_response({"updated": ok})


async def gateway_reply(request: web.Request) -> web.Response:
    """``POST /api/v1/gateway/reply {"from": "+7...", "text": "1"}``: a patient's answer."""
    body = await _json(request)
    phone = phones.normalize(str(body.get("from", ""))[:30])
    if phone is None:
        return web.json_response({"result": "bad_number"}, status=400)
    result = await escort.accept_reply(request.app[SERVICES].db, phone, str(body.get("text", ""))[:500],
                                       now_ts(request))
    return web.json_response({"result": result})


# --- the patient's page behind the link --------------------------------------------------------
async def _appointment(request: web.Request) -> dict[str, Any]:
    """The appointment behind a link; a link dies once its appointment is over."""
    appt = await escort.appointment_by_token(request.app[SERVICES].db, _secret(request), request.match_info["token"])
    if appt is None or appt["ends_ts"] <= now_ts(request):
        raise web.HTTPNotFound(text="Ссылка устарела или неверна")
    return appt


LINK_DAYS = 7  # the page offers the doctor's free time over the next week
LINK_SLOTS_A_DAY, LINK_SLOTS = 6, 24


async def offered_slots(request: web.Request, appt: dict[str, Any]) -> list[schedule.Slot]:
    """The doctor's free slots within working hours that the page offers (and the only ones
    a submitted move may take)."""
    if appt["status"] not in schedule.ACTIVE:
        return []
    tz, now, slots = clinic_tz(request), now_ts(request), []
    for offset in range(1, LINK_DAYS + 1):
        day = local_today(request) + timedelta(days=offset)
        slots += [s for s in await schedule.day_slots(request.app[SERVICES].db, appt["doctor_id"], day, tz)
                  if s.appointment_id is None and s.starts_at.timestamp() > now][:LINK_SLOTS_A_DAY]
    return slots[:LINK_SLOTS]


@aiohttp_jinja2.template("patient_link.html")
async def patient_link(request: web.Request) -> dict[str, Any]:
    appt = await _appointment(request)
    return {"appt": appt, "slots": await offered_slots(request, appt), "token": request.match_info["token"],
            "done": request.query.get("done")}


async def patient_link_submit(request: web.Request) -> web.StreamResponse:
    appt = await _appointment(request)
    form = await request.post()
    action = str(form.get("action", ""))
    db, now = request.app[SERVICES].db, now_ts(request)
    if appt["status"] not in schedule.ACTIVE:
        raise web.HTTPConflict(text="Запись уже изменена")
    if action in ("confirmed", "cancelled"):
        await escort.apply_choice(db, appt["id"], action, now, "ссылка в сообщении")
        token = request.match_info["token"]
    elif action == "move":
        try:
            starts = schedule.parse_local(str(form.get("slot", "")), clinic_tz(request))
            if starts.timestamp() not in {s.starts_at.timestamp() for s in await offered_slots(request, appt)}:
                raise BookingError("Это время не предлагалось: выберите из списка")
            minutes = int((appt["ends_ts"] - appt["starts_ts"]) // 60)
            await schedule.reschedule(db, appt["id"], starts, minutes, now)
        except BookingError as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        moved = await schedule.get_appointment(db, appt["id"])
        assert moved is not None
        token = escort.link_token(_secret(request), moved["id"], moved["starts_ts"])
    else:
        raise web.HTTPBadRequest(text="Неизвестное действие")
    raise web.HTTPFound(f"/e/{token}?done={action}")

"""Booking and the schedule: "Назначить приём" from a call card opens the booking panel with
the patient and the call filled in; an appointment booked there converts that call (seed 000).
Also the day's schedule with statuses, the next day's call list, tasks and the waiting list."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from crm import (
    call_listing,
    clinic_settings,
    comments,
    context,
    patients,
    phones,
    schedule,
    shifts,
    tasks,
)
from crm.dates import parse_day
from crm.rules.booking import default_guardian
from crm.schedule import BookingError
from pbx.services import SERVICES
from web.common import (
    clean_linkedid,
    clinic_tz,
    day_label,
    int_or_none,
    local_today,
    now_ts,
    safe_back,
    trace,
    viewer,
)
from web.patients import patient_fields


def _day(text: str | None, default: date) -> date:
    try:
        return parse_day(text) if text else default
    except ValueError:
        return default


def live_talk(request: web.Request, extension: str | None) -> str | None:
    """The call the administrator is talking on now: a booking made during it converts it."""
    calls = request.app[SERVICES].calls
    if calls is None or not extension:
        return None
    for card in calls.live.get(extension, {}).values():
        if card.status in ("talking", "on_hold"):
            return card.linkedid
    return None


async def booking_context(request: web.Request, values: Any, error: str | None) -> dict[str, Any]:
    db = request.app[SERVICES].db
    me = await viewer(request)
    today = local_today(request)
    doctors = await schedule.doctors(db)
    # seed 001: a future appointment is moved to another day from the same form
    moving = await _movable(db, values.get("move"), now_ts(request))
    if moving is not None:
        values = {"doctor": str(moving["doctor_id"]), "patient": str(moving["patient_id"])} | dict(values)
    # seed 001: the schedule filtered by a doctor or by a group of specialists (a specialty)
    specialties = sorted({d["specialty"] for d in doctors})
    specialty = str(values.get("specialty") or "")
    if specialty in specialties:
        doctors = [d for d in doctors if d["specialty"] == specialty]
    else:
        specialty = ""
    doctor_id = int_or_none(values.get("doctor"))
    if doctor_id not in {d["id"] for d in doctors}:
        doctor_id = doctors[0]["id"] if doctors else None
    day = _day(values.get("date"), today)
    patient_id = int_or_none(values.get("patient"))
    ctx = None
    if patient_id:
        try:
            ctx = await context.context(db, patient_id, today=today, now=now_ts(request))
        except KeyError:
            patient_id = None
    call = clean_linkedid(values.get("call"))
    if call is None:
        call = live_talk(request, await shifts.current_extension(db, me.user_id))
    slots: list[schedule.Slot] = []
    nearest = None
    if doctor_id:
        tz, now = clinic_tz(request), now_ts(request)
        slots = await schedule.free_slots(db, doctor_id, day, tz, now)
        if not slots:
            nearest = await schedule.next_free_slot(db, doctor_id, day, tz, now)
    kept = {"patient": patient_id, "call": call, "phone": values.get("phone"),  # what the filter form keeps
            "move": moving["id"] if moving else None}
    call_comment = (await comments.get_comment(db, call) or {}).get("text", "") if call else ""
    guardian = None
    if ctx and ctx["guardians"]:  # a ward: the calling guardian, else the last one named
        caller = phones.normalize(str(values.get("phone") or ""))
        if caller is None and call:
            stored = await call_listing.get_call_by_linkedid(db, call)
            caller = stored["phone_e164"] if stored else None
        guardian = int_or_none(values.get("guardian")) or default_guardian(
            [(g["id"], str(g["phones"] or "").split()) for g in ctx["guardians"]], caller,
            await schedule.last_guardian(db, patient_id) if patient_id else None)
    # a fresh form follows the clinic's default for «СМС оповещение»; a posted one keeps its choice
    notify = bool(values.get("notify")) if "slot" in values else bool(await clinic_settings.get(db, "notify_default"))
    nearest_query = urlencode({"doctor": doctor_id, "date": nearest.starts_at.date().isoformat()}
                              | {k: v for k, v in kept.items() if v}) if nearest else ""
    return {
        "nearest": nearest, "nearest_query": nearest_query,
        "doctors": doctors, "doctor_id": doctor_id, "day": day.isoformat(), "slots": slots,
        "patient_id": patient_id, "ctx": ctx, "call": call, "form": values, "error": error,
        "chosen_slot": values.get("slot", ""), "call_comment": call_comment, "notify": notify,
        "moving": moving, "guardian": guardian, "specialties": specialties, "specialty": specialty,
    }


async def _movable(db: Any, raw: object, now: float) -> dict[str, Any] | None:
    """The appointment being moved: only a future one still to happen."""
    appointment_id = int_or_none(raw)
    if appointment_id is None:
        return None
    appt = await schedule.get_appointment(db, appointment_id)
    if appt is None or appt["status"] not in ("unconfirmed", "confirmed") or appt["starts_ts"] <= now:
        raise web.HTTPBadRequest(text="Этот приём нельзя перенести")
    return appt


@aiohttp_jinja2.template("booking.html")
async def booking_form(request: web.Request) -> dict[str, Any]:
    return await booking_context(request, request.query, None)


async def booking_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    db = request.app[SERVICES].db
    me = await viewer(request)
    if form.get("move"):
        return await _move(request, form)
    try:
        patient_id = int_or_none(form.get("patient"))
        if patient_id is None:
            last, first, middle, born, phone = patient_fields(form, local_today(request))
            patient_id = await patients.add_patient(db, last, first, middle, birth_date=born,
                                                    phone_numbers=(phone,) if phone else (),
                                                    consent_pd=bool(form.get("consent_pd")))
        doctor_id = int_or_none(form.get("doctor"))
        if doctor_id is None:
            raise BookingError("Выберите врача")
        slot = str(form.get("slot", ""))
        if not slot:
            raise BookingError("Выберите время приёма")
        starts = schedule.parse_local(slot, clinic_tz(request))
        minutes = int_or_none(form.get("minutes")) or 30
        guardian = int_or_none(form.get("guardian"))
        # seed 000: a panel opened during the call keeps it; one opened before and completed
        # during a conversation is tied to that conversation
        call = clean_linkedid(str(form.get("call", ""))) or live_talk(
            request, await shifts.current_extension(db, me.user_id))
        appt = await schedule.book(
            db, patient_id=patient_id, doctor_id=doctor_id, starts_at=starts, minutes=minutes,
            now=now_ts(request), user_id=me.user_id, call_linkedid=call,
            guardian_id=guardian, comment=str(form.get("comment", "")),
            notify_requested=bool(form.get("notify")),
        )
    except (BookingError, ValueError) as exc:
        values = {k: str(v) for k, v in form.items()}
        if patient_id is not None:
            values["patient"] = str(patient_id)
        return aiohttp_jinja2.render_template(
            "booking.html", request, await booking_context(request, values, str(exc)), status=400
        )
    await trace(request, "appointment_book", "appointment", appt, f"пациент {patient_id}, {slot}")
    raise web.HTTPFound(f"/patients/{patient_id}?booked={appt}")


async def _move(request: web.Request, form: Any) -> web.StreamResponse:
    """Seed 001: «Будущие приемы пациентов можно ... переносить на другой день» — the same slot
    rules as a booking (free, working hours, not past); confirmation is asked anew."""
    db = request.app[SERVICES].db
    appt = await _movable(db, form.get("move"), now_ts(request))
    assert appt is not None
    slot = str(form.get("slot", ""))
    try:
        if not slot:
            raise BookingError("Выберите новое время приёма")
        minutes = max(1, round((appt["ends_ts"] - appt["starts_ts"]) / 60))
        await schedule.reschedule(db, appt["id"], schedule.parse_local(slot, clinic_tz(request)), minutes,
                                  now_ts(request), doctor_id=int_or_none(form.get("doctor")),
                                  user_id=(await viewer(request)).user_id)
    except (BookingError, ValueError) as exc:
        values = {k: str(v) for k, v in form.items()}
        return aiohttp_jinja2.render_template(
            "booking.html", request, await booking_context(request, values, str(exc)), status=400)
    await trace(request, "appointment_move", "appointment", appt["id"], f"{appt['starts_at']} -> {slot}")
    raise web.HTTPFound(f"/patients/{appt['patient_id']}?moved={appt['id']}")


@aiohttp_jinja2.template("schedule.html")
async def schedule_page(request: web.Request) -> dict[str, Any]:
    db = request.app[SERVICES].db
    tz = clinic_tz(request)
    day = _day(request.query.get("date"), local_today(request))
    doctors = await schedule.doctors(db)
    week_of = int_or_none(request.query.get("week"))
    if week_of is not None and any(d["id"] == week_of for d in doctors):
        return await _week(request, day, next(d for d in doctors if d["id"] == week_of), doctors)
    columns = []
    for d in doctors:
        slots = await schedule.day_slots(db, d["id"], day, tz)
        appts = {a["id"]: a for a in await schedule.day_appointments(db, day, tz, d["id"])}
        columns.append({"doctor": d, "slots": slots, "appts": appts})
    # "Обзвон на ближайший день": the next day (within a week) that has appointments
    call_list: list[dict[str, Any]] = []
    call_day = local_today(request)
    for _ in range(7):
        call_day += timedelta(days=1)
        call_list = [a for a in await schedule.day_appointments(db, call_day, tz)
                     if a["status"] in schedule.ACTIVE]
        if call_list:
            break
    return _frame(request, day, doctors, step=1) | {
        "columns": columns, "day_label": day_label(day), "call_list": call_list, "call_day": day_label(call_day),
        "cancelled": [a for a in await schedule.day_appointments(db, day, tz) if a["status"] in ("cancelled",)],
    }


def _frame(request: web.Request, day: date, doctors: list[dict[str, Any]], *, step: int) -> dict[str, Any]:
    """What the day and the week views share: the day, its neighbours ``step`` days away, the
    doctors, the statuses, the time now; the day view's parts empty."""
    return {"week": None, "doctors": doctors, "day": day.isoformat(),
            "prev": (day - timedelta(days=step)).isoformat(), "next": (day + timedelta(days=step)).isoformat(),
            "statuses": schedule.STATUSES, "now": now_ts(request), "columns": [], "call_list": [], "call_day": "",
            "cancelled": []}


async def _week(request: web.Request, day: date, doctor: dict[str, Any],
                doctors: list[dict[str, Any]]) -> dict[str, Any]:
    """One doctor's week (Monday to Sunday around ``day``): a row per slot time, a column per
    day; each cell the appointment, «Записать», or nothing when the doctor does not work."""
    db, tz = request.app[SERVICES].db, clinic_tz(request)
    monday = day - timedelta(days=day.weekday())
    days = [monday + timedelta(days=i) for i in range(7)]
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    times: set[str] = set()
    for i, d in enumerate(days):
        appts = {a["id"]: a for a in await schedule.day_appointments(db, d, tz, doctor["id"])}
        for slot in await schedule.day_slots(db, doctor["id"], d, tz):
            t = slot.starts_at.strftime("%H:%M")
            times.add(t)
            cells[(t, i)] = {"slot": slot, "appt": appts.get(slot.appointment_id)}
    return _frame(request, day, doctors, step=7) | {
        "week": {"doctor": doctor, "days": days, "times": sorted(times), "cells": cells},
        "day_label": f"{doctor['full_name']}, неделя с {monday.strftime('%d.%m.%Y')}",
    }


async def appointment_status(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    status = str(form.get("status", ""))
    if status not in schedule.STATUSES:
        raise web.HTTPBadRequest(text="Неизвестный статус")
    try:
        await schedule.set_status(request.app[SERVICES].db, int(request.match_info["id"]), status,
                                  at=now_ts(request), user_id=(await viewer(request)).user_id)
    except BookingError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    await trace(request, "appointment_status", "appointment", request.match_info["id"], status)
    raise web.HTTPFound(_back(form.get("back")))


def _back(target: object) -> str:
    """Only our own pages: never an open redirect."""
    return safe_back(target, "/schedule")


@aiohttp_jinja2.template("tasks.html")
async def tasks_page(request: web.Request) -> dict[str, Any]:
    db = request.app[SERVICES].db
    return {"tasks": await tasks.open_tasks(db), "waiting": await schedule.waiting(db),
            "today": local_today(request).isoformat()}


async def task_add(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    me = await viewer(request)
    try:
        due = parse_day(str(form.get("due", "")))
    except ValueError:
        raise web.HTTPBadRequest(text="Неверная дата задачи") from None
    try:
        await tasks.add_task(request.app[SERVICES].db, int_or_none(form.get("patient")),
                                str(form.get("title", "")), due, me.user_id)
    except BookingError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    raise web.HTTPFound(_back(form.get("back")))


async def task_done(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    await tasks.complete_task(request.app[SERVICES].db, int(request.match_info["id"]), at=now_ts(request),
                                 user_id=(await viewer(request)).user_id)
    raise web.HTTPFound(_back(form.get("back")))


async def task_move(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    try:
        due = parse_day(str(form.get("due", "")))
    except ValueError:
        raise web.HTTPBadRequest(text="Неверная дата задачи") from None
    if due < local_today(request):
        raise web.HTTPBadRequest(text="Задачу нельзя перенести в прошлое")
    if not await tasks.move_task(request.app[SERVICES].db, int(request.match_info["id"]), due, at=now_ts(request),
                                    user_id=(await viewer(request)).user_id):
        raise web.HTTPNotFound(text="Нет такой открытой задачи")
    raise web.HTTPFound(_back(form.get("back")))


async def waiting_add(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    me = await viewer(request)
    pid = int_or_none(form.get("patient"))
    if pid is None or not await patients.exists(request.app[SERVICES].db, pid):
        raise web.HTTPBadRequest(text="Нет такого пациента")
    await schedule.add_waiting(request.app[SERVICES].db, pid, str(form.get("specialty", "")),
                               str(form.get("note", "")), me.user_id, at=now_ts(request))
    raise web.HTTPFound(_back(form.get("back")))

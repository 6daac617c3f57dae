"""Patients in the panel: search, a new card (from a call's "Добавить пациента"), and the
patient card with the context block (seed 001), appointments, tasks, waiting list and calls."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import call_listing, context, escort, patients, phones, schedule
from crm.dates import parse_day
from crm.rules import escort as rules
from crm.rules.appeal_records import appointment_state
from crm.rules.appeals import WAIT_OPEN
from crm.rules.escort import SCENARIOS
from pbx.services import SERVICES
from web.common import clean_linkedid, clinic_tz, int_or_none, local_today, now_ts, trace, viewer
from web.history import row_view

NAME_MAX = 60


@aiohttp_jinja2.template("patients.html")
async def patient_list(request: web.Request) -> dict[str, Any]:
    q = request.query.get("q", "").strip()[:100]
    db = request.app[SERVICES].db
    return {"q": q, "found": await patients.search(db, q) if q else await patients.recent(db)}


@aiohttp_jinja2.template("patient_new.html")
async def patient_new_form(request: web.Request) -> dict[str, Any]:
    return {"form": {"phone": request.query.get("phone", "")[:30]},
            "call": clean_linkedid(request.query.get("call")), "error": None}


def birth_day(text: str, today: date) -> str | None:
    """A typed birth date (``14.03.1985`` or ISO) as the stored ISO day; None if empty."""
    if not text.strip():
        return None
    try:
        born = parse_day(text)
    except ValueError:
        raise ValueError("Неверная дата рождения") from None
    if born > today:
        raise ValueError("Неверная дата рождения")
    return born.isoformat()


def patient_fields(form: Any, today: date) -> tuple[str, str, str, str | None, str]:
    """Validated new-patient fields; ValueError with the message to show."""
    last = " ".join(str(form.get("last_name", "")).split())[:NAME_MAX]
    first = " ".join(str(form.get("first_name", "")).split())[:NAME_MAX]
    middle = " ".join(str(form.get("middle_name", "")).split())[:NAME_MAX]
    if not last or not first:
        raise ValueError("Введите фамилию и имя")
    born = birth_day(str(form.get("birth_date", "")), today)
    phone = str(form.get("phone", "")).strip()[:30]
    phones.refuse_extension(phone)
    if phone and phones.normalize(phone) is None:
        raise ValueError("Неверный номер телефона")
    return last, first, middle, born, phone


async def patient_new_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    call = clean_linkedid(str(form.get("call", "")))
    try:
        last, first, middle, born, phone = patient_fields(form, local_today(request))
    except ValueError as exc:
        return aiohttp_jinja2.render_template(
            "patient_new.html", request, {"form": form, "call": call, "error": str(exc)}, status=400
        )
    pid = await patients.add_patient(request.app[SERVICES].db, last, first, middle, birth_date=born,
                                     phone_numbers=(phone,) if phone else (), consent_pd=bool(form.get("consent_pd")))
    await trace(request, "patient_create", "patient", pid)
    if form.get("then") == "booking":
        raise web.HTTPFound(f"/booking?patient={pid}" + (f"&call={call}" if call else ""))
    raise web.HTTPFound(f"/patients/{pid}")


def _edit_view(p: dict[str, Any], error: str | None, guardians: list[dict[str, Any]]) -> dict[str, Any]:
    rows = list(p["phones"]) + [{"e164": "", "kind": "mobile"}] * 2  # room for new numbers
    return {"p": p, "phone_rows": rows, "kinds": patients.PHONE_KINDS, "error": error, "guardians": guardians}


@aiohttp_jinja2.template("patient_edit.html")
async def patient_edit_form(request: web.Request) -> dict[str, Any]:
    p = await patients.get_for_edit(request.app[SERVICES].db, int(request.match_info["id"]))
    if p is None:
        raise web.HTTPNotFound(text="Нет такого пациента")
    return _edit_view(p, None, await patients.guardians_of(request.app[SERVICES].db, p["id"]))


async def patient_edit_submit(request: web.Request) -> web.StreamResponse:
    """Seed 001: «Если новый номер теперь основной, внесите его в карточку пациента»."""
    db = request.app[SERVICES].db
    pid = int(request.match_info["id"])
    form = await request.post()
    typed_birth = str(form.get("birth_date", "")).strip()
    birth_error: ValueError | None = None
    try:
        born = birth_day(typed_birth, local_today(request))
    except ValueError as exc:
        born, birth_error = typed_birth, exc  # shown back with the error below
    edit = patients.PatientEdit(
        last_name=str(form.get("last_name", "")), first_name=str(form.get("first_name", "")),
        middle_name=str(form.get("middle_name", "")), birth_date=born,
        phones=tuple(zip((str(x) for x in form.getall("phone", [])),
                         (str(x) for x in form.getall("phone_kind", [])), strict=False)),
        consent_pd=bool(form.get("consent_pd")), notify_opt_out=bool(form.get("notify_opt_out")),
        push_enabled=bool(form.get("push_enabled")), notes=str(form.get("notes", "")),
        extra_notes=str(form.get("extra_notes", "")),
    )
    try:
        if birth_error is not None:
            raise birth_error
        await patients.update_patient(db, pid, edit)
    except ValueError as exc:
        current = await patients.get_for_edit(db, pid)
        if current is None:
            raise web.HTTPNotFound(text="Нет такого пациента") from None
        shown = current | {k: v for k, v in edit.__dict__.items() if k != "phones"} | {
            "phones": [{"e164": n, "kind": k} for n, k in edit.phones if n.strip()]}
        return aiohttp_jinja2.render_template("patient_edit.html", request,
                                              _edit_view(shown, str(exc), await patients.guardians_of(db, pid)),
                                              status=400)
    await trace(request, "patient_update", "patient", pid)
    raise web.HTTPFound(f"/patients/{pid}?saved=1")


async def patient_guardians_submit(request: web.Request) -> web.StreamResponse:
    """Add a guardian to the card (by name and number; a known number's guardian is reused) or
    end a guardianship."""
    db = request.app[SERVICES].db
    pid = int(request.match_info["id"])
    form = await request.post()
    try:
        if form.get("action") == "remove":
            gid = int_or_none(form.get("guardian"))
            if gid is None:
                raise ValueError("Неверный запрос")
            await patients.remove_guardian(db, pid, gid)
        else:
            await patients.add_guardian(db, pid, str(form.get("full_name", "")), str(form.get("phone", "")),
                                        str(form.get("relation", "")))
    except ValueError as exc:
        current = await patients.get_for_edit(db, pid)
        if current is None:
            raise web.HTTPNotFound(text="Нет такого пациента") from None
        return aiohttp_jinja2.render_template("patient_edit.html", request,
                                              _edit_view(current, str(exc), await patients.guardians_of(db, pid)),
                                              status=400)
    await trace(request, "patient_update", "patient", pid, "опекуны")
    raise web.HTTPFound(f"/patients/{pid}/edit")


@aiohttp_jinja2.template("patient.html")
async def patient_card(request: web.Request) -> dict[str, Any]:
    db = request.app[SERVICES].db
    pid = int(request.match_info["id"])
    me = await viewer(request)
    try:
        ctx = await context.context(db, pid, today=local_today(request), now=now_ts(request))
    except KeyError:
        raise web.HTTPNotFound(text="Нет такого пациента") from None
    await trace(request, "patient_view", "patient", pid)
    appointments = await schedule.patient_appointments(db, pid)
    for a in appointments[:20]:  # when and how the patient was notified or called, and the outcome
        a["escort"] = await escort.appointment_log(db, a["id"])
    for a in appointments:  # seed 004: the same record symbols as «История обращений»
        a["state"] = appointment_state(a["status"])
    recent: list[dict[str, Any]] = []
    if me.history in ("read", "edit") and ctx["patient"]["phones"]:
        # exact numbers on the index (a part-of-number search would scan every call)
        numbers = tuple(ph["e164"] for ph in ctx["patient"]["phones"])
        recent = await call_listing.list_calls(db, call_listing.CallFilter(phones=numbers, limit=20))
    booked = int_or_none(request.query.get("booked"))
    message_notice = None
    mine = next((a for a in appointments if a["id"] == booked), None)
    if mine is not None:  # what the «СМС оповещение» tick came to, said right after booking
        subject = await escort.subject(db, booked, clinic_tz(request))
        progress = await escort.details_progress(db, booked)
        message_notice = rules.booking_message_notice(
            bool(mine.get("notify_requested")), (await escort.settings(db)).details_enabled,
            rules.exclusion(rules.DETAILS, subject.facts) if subject else None, **progress)
    return {
        "message_notice": message_notice,
        "ctx": ctx, "p": ctx["patient"], "appointments": appointments,
        "calls": [row_view(c, clinic_tz(request)) for c in recent[:20]], "can_history": me.history in ("read", "edit"),
        "tz": clinic_tz(request), "scenarios": SCENARIOS, "wait_open": WAIT_OPEN,
        "booked": booked, "today": local_today(request).isoformat(),
        "moved": int_or_none(request.query.get("moved")), "saved": request.query.get("saved") == "1",
        # appointments' starts_at is the clinic's wall time: a future one can be moved
        "now_local": datetime.fromtimestamp(now_ts(request), clinic_tz(request)).strftime("%Y-%m-%dT%H:%M"),
    }

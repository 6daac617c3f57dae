"""The call history (Russian UI): filters, CSV export and recording playback.

Who may see it is a per-user right (none / read / edit, seed 000). Recordings are served only
to users with that right, by call id: the file name comes from our own record and must look
like ``<uniqueid>.wav`` inside the recordings folder; aiohttp's FileResponse does HTTP Range.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from crm.call_listing import get_call, history_page, list_calls
from pbx.services import SERVICES
from web.api import call_filter, make_cursor
from web.common import clinic_tz, csv_lines, csv_safe, local_time, trace, viewer

TYPE_LABELS = {
    "incoming": "Входящий", "missed": "Пропущенный", "outgoing": "Исходящий",
    "outgoing_unanswered": "Исходящий без ответа", "internal": "Внутренний",
    "outgoing_not_connected": "Исходящий: свой телефон не ответил",
}
FILTER_TYPES = (
    ("", "Все"), ("missed_processed", "Пропущенные, обработанные"),
    ("missed_unprocessed", "Пропущенные, необработанные"), ("incoming", "Входящие"),
    ("outgoing", "Исходящие"), ("outgoing_unanswered", "Исходящие без ответа"),
)
# Asterisk's uniqueid (1796195341.45) or a robot's channel id (cb-7-1-5f3a-101), as WAV or as
# the compressed Ogg Vorbis it becomes (pbx/workers/recordings.py); never a path
RECORDING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,150}\.(wav|ogg)$")
AUDIO_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg"}


async def history_access(request: web.Request) -> str:
    return (await viewer(request)).history


async def require_history(request: web.Request) -> None:
    if await history_access(request) not in ("read", "edit"):
        raise web.HTTPForbidden(text="Нет доступа к истории звонков")


def duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def row_view(call: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    patients = call["patients"]
    if call["caller_kind"] in ("employee", "contractor"):
        who = "Сотрудник" if call["caller_kind"] == "employee" else "Контрагент"
        if call.get("counterpart_name"):
            who = f"{who}: {call['counterpart_name']}"
    elif call.get("guardian"):  # seed 000: «Пациенты: 2…», which expands to the guardian and the wards
        who = f"Пациенты: {len(patients)}"
    elif len(patients) == 1:
        who = patients[0]["full_name"]
    elif patients:
        who = f"Пациенты: {len(patients)}"
    else:
        who = "Нет в базе"
    return {
        **call,
        "when": local_time(call["started_at"], tz),
        "answered_by": call.get("answered_by_name") or call.get("answered_by_ext") or "",
        "type_label": TYPE_LABELS.get(call["call_type"], call["call_type"]),
        "duration": duration(call["talk_seconds"]),
        "who": who,
    }


@aiohttp_jinja2.template("calls.html")
async def history(request: web.Request) -> dict[str, Any]:
    await require_history(request)
    try:
        f = call_filter(request.query, clinic_tz(request))
        error = None
    except ValueError as exc:
        f, error = call_filter({}), str(exc)
    calls, employees, labels = await history_page(request.app[SERVICES].db, f)
    tz = clinic_tz(request)
    # the next (older) page starts after the last call shown, whatever is saved meanwhile
    filters = {k: v for k, v in request.query.items() if k not in ("cursor", "offset")}
    older = urlencode({**filters, "cursor": make_cursor(calls[-1])}) if len(calls) == f.limit else None
    return {"calls": [row_view(c, tz) for c in calls], "q": request.query, "error": error,
            "types": FILTER_TYPES, "csv_query": urlencode(filters), "employees": employees,
            "tag_labels": labels, "can_edit": await history_access(request) == "edit",
            "older": older, "first_page": urlencode(filters) if "cursor" in request.query or f.offset else None}


CSV_PAGE = 1000


async def history_csv(request: web.Request) -> web.StreamResponse:
    """Every call of the chosen period (not just a page of it), streamed a thousand at a time
    newest first; pages follow each other by (start, id), so calls saved meanwhile neither
    repeat nor push rows out."""
    await require_history(request)
    try:
        f = call_filter({**request.query, "limit": str(CSV_PAGE)}, clinic_tz(request))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    tz = clinic_tz(request)
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": 'attachment; filename="calls.csv"'})
    await response.prepare(request)
    await response.write(("\ufeff" + csv_lines([["Дата и время", "Тип", "Номер", "Пациент", "Длительность", "Ответил",
                                                "Пропустили", "Виртуальный номер", "Был записан", "Конверсия",
                                                "Метки", "Комментарий"]])).encode())
    total, db = 0, request.app[SERVICES].db
    # the next page is read (its SQL runs without the interpreter's lock) while this one is
    # turned into text and sent (a month at 1M calls: 2.0x its bare reads, bench/README.md stop 45)
    page = asyncio.ensure_future(list_calls(db, f))
    try:
        while True:
            calls = await page
            if len(calls) == CSV_PAGE:
                f = dataclasses.replace(f, offset=0, before=(calls[-1]["started_at"], calls[-1]["id"]))
                page = asyncio.ensure_future(list_calls(db, f))
            if calls:
                await response.write(_csv_page(calls, tz).encode())
            total += len(calls)
            if len(calls) < CSV_PAGE:
                break
    finally:
        page.cancel()  # the client gone mid-way: the read ahead is not waited for
    await trace(request, "history_csv", "calls", "", f"{total} звонков; {request.query_string[:200]}")
    await response.write_eof()
    return response


def _csv_page(calls: list[dict[str, Any]], tz: ZoneInfo) -> str:
    rows = []
    for c in (row_view(call, tz) for call in calls):
        # a normalised number is only "+" and digits; a raw caller ID is the network's text
        rows.append([c["when"], c["type_label"], c["phone_e164"] or csv_safe(c["caller_raw"]),
                     csv_safe(c["who"]), c["duration"], c["answered_by_ext"],
                     " ".join(c["missed_by"]), c["did"], "Да" if c["had_appointment"] else "Нет",
                     "Да" if c["converted"] else "Нет",
                     csv_safe(", ".join(c["tags"]) or ("—" if c["tags_skipped"] else "")),
                     csv_safe(c["comment"]["text"] if c["comment"] else "")])
    return csv_lines(rows)


RECENT_PLAYS = web.AppKey("recent_plays", dict)
PLAY_SPAN = 600.0  # a player's range requests within this long are one listening


def first_play(recent: dict[tuple[int | None, int], float], key: tuple[int | None, int], now: float) -> bool:
    """Whether this fetch of a recording starts a listening to audit: any range (``bytes=-N``,
    ``bytes=1-``, none) counts; a player's further pieces within PLAY_SPAN do not."""
    if len(recent) > 10_000:
        for k in [k for k, at in recent.items() if now - at > PLAY_SPAN]:
            del recent[k]
    started = recent.get(key)
    if started is not None and now - started <= PLAY_SPAN:
        return False
    recent[key] = now
    return True


async def recording(request: web.Request) -> web.StreamResponse:
    await require_history(request)
    services = request.app[SERVICES]
    call = await get_call(services.db, int(request.match_info["id"]))
    name = str(call["recording"]) if call else ""
    if not RECORDING_NAME.match(name):
        raise web.HTTPNotFound(text="Нет записи")
    base = services.settings.recordings_dir.resolve()
    path = (base / name).resolve()
    if path.parent != base or not path.is_file():
        raise web.HTTPNotFound(text="Нет записи")
    if first_play(request.app[RECENT_PLAYS], ((await viewer(request)).user_id, call["id"]), services.clock.now()):
        await trace(request, "recording_play", "call", request.match_info["id"])
    kind = AUDIO_TYPES[path.suffix.lstrip(".")]
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "private"})

"""The JSON API (read side): ``/api/v1/calls``, ``/api/v1/calls/{id}``, ``/api/v1/health``,
``/api/v1/openapi.json``. Calls need ``Authorization: Bearer <token>`` (``clinic-pbx token
create NAME``); health and the OpenAPI document are public."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from aiohttp import web

from crm import audit, tokens
from crm.call_listing import CALL_TYPES, CallFilter, get_call, list_calls
from crm.dates import parse_day, parse_moment
from pbx.services import HEALTH_PARTS, SERVICES, health
from web.common import ROW_ID
from web.security import client_of

OPENAPI = Path(__file__).parent / "openapi.json"


def setup_api(app: web.Application) -> None:
    app.router.add_get("/api/v1/health", api_health)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/api/v1/calls", api_calls)
    app.router.add_get(rf"/api/v1/calls/{{id:{ROW_ID}}}", api_call)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def authorized(request: web.Request, scope: str = "calls:read") -> str | None:
    """The name of the request's valid bearer token with ``scope``, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    services = request.app[SERVICES]
    return await tokens.check_token(services.db, token.strip(), scope, services.clock.now())


async def api_trace(request: web.Request, token_name: str, action: str, object_id: object = "",
                    detail: str = "") -> None:
    services = request.app[SERVICES]
    await audit.record(services.db, f"API: {token_name}", action, services.clock.now(), object_kind="call",
                       object_id=object_id, detail=detail, address=client_of(request))


def parse_instant(text: str, *, end: bool = False, tz: tzinfo = UTC) -> str:
    """``2026-11-20`` (a whole day in ``tz``; as the end: exclusive next day) or an ISO
    date-time; naive times are in ``tz`` (UTC for the API, the clinic's zone for the panel).
    Returns ISO UTC with milliseconds, like the stored values."""
    if len(text) == 10:
        d = parse_day(text)
        dt = datetime(d.year, d.month, d.day, tzinfo=tz) + (timedelta(days=1) if end else timedelta())
    else:
        dt = parse_moment(text)
        dt = dt.replace(tzinfo=tz) if dt.tzinfo is None else dt
    dt = dt.astimezone(UTC)
    return dt.isoformat(timespec="milliseconds")


def call_filter(q: Any, tz: tzinfo = UTC) -> CallFilter:
    """Query string -> CallFilter; ValueError with a readable message on bad input. Dates
    are whole days in ``tz``."""
    call_type = q.get("type") or None
    missed_state = None
    if call_type in ("missed_processed", "missed_unprocessed"):
        call_type, missed_state = None, call_type
    elif call_type is not None and call_type not in CALL_TYPES:
        raise ValueError(f"type must be one of {', '.join(CALL_TYPES)}, missed_processed, "
                         "missed_unprocessed")
    try:
        since = parse_instant(q["since"], tz=tz) if q.get("since") else None
        until = parse_instant(q["until"], end=True, tz=tz) if q.get("until") else None
    except ValueError:
        raise ValueError("since/until must be ISO dates or date-times") from None
    try:
        limit = int(q.get("limit", 100))
        offset = int(q.get("offset", 0))
        employee = int(q["employee"]) if q.get("employee") else None
    except ValueError:
        raise ValueError("limit, offset and employee must be integers") from None
    if not 1 <= limit <= 1000 or not 0 <= offset <= 10**9:
        raise ValueError("limit must be 1..1000 and offset 0..1000000000")
    if employee is not None and not 0 < employee < 2**62:  # SQLite's integers are 64-bit
        raise ValueError("employee must be a user id")
    query = (q.get("q") or "")[:100] or None
    did = (q.get("did") or "")[:32] or None
    converted_text = q.get("converted") or ""
    if converted_text not in ("", "yes", "no"):
        raise ValueError("converted must be yes or no")
    converted = None if not converted_text else converted_text == "yes"
    tag = (q.get("tag") or "")[:200] or None
    before = read_cursor(q["cursor"]) if q.get("cursor") else None
    if before is not None and offset:
        raise ValueError("use either cursor or offset")
    return CallFilter(since=since, until=until, call_type=call_type, missed_state=missed_state,
                      user_id=employee, query=query, did=did, converted=converted, tag=tag,
                      limit=limit, offset=offset, before=before)


def make_cursor(call: dict[str, Any]) -> str:
    """Where the next page starts: after this call, newest first (its start and id)."""
    return base64.urlsafe_b64encode(f"{call['started_at']}|{call['id']}".encode()).decode().rstrip("=")


def read_cursor(text: str) -> tuple[str, int]:
    try:
        started, _, call_id = base64.urlsafe_b64decode(text[:200] + "=" * (-len(text[:200]) % 4)).decode().partition("|")
        datetime.fromisoformat(started)
        number = int(call_id)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        raise ValueError("cursor is not one this API gave") from None
    if not 0 < number < 2**62:
        raise ValueError("cursor is not one this API gave")
    return started, number


async def api_calls(request: web.Request) -> web.Response:
    name = await authorized(request)
    if name is None:
        return error(401, "a valid API token with the calls:read scope is required")
    try:
        f = call_filter(request.query)
    except ValueError as exc:
        return error(400, str(exc))
    calls = await list_calls(request.app[SERVICES].db, f)
    await api_trace(request, name, "api_calls_list", "", f"{len(calls)} звонков")
    # a full page may have more after it: ``next_cursor`` fetches them, however many calls are
    # saved meanwhile (a page never repeats or skips a call, unlike an offset)
    more = len(calls) == f.limit
    return web.json_response({"calls": calls, "limit": f.limit, "offset": f.offset, "more": more,
                              "next_cursor": make_cursor(calls[-1]) if more else None})


async def api_call(request: web.Request) -> web.Response:
    name = await authorized(request)
    if name is None:
        return error(401, "a valid API token with the calls:read scope is required")
    call = await get_call(request.app[SERVICES].db, int(request.match_info["id"]))
    if call is None:
        return error(404, "no such call")
    await api_trace(request, name, "api_call_read", call["id"])
    return web.json_response(call)


async def api_health(request: web.Request) -> web.Response:
    status = await health(request.app[SERVICES])
    ok = all(bool(status[k]) for k in HEALTH_PARTS)
    # public: the providers' states by id, not the clinic's names for them
    status["providers"] = [{"id": p["id"], "status": p["status"]} for p in status["providers"]]
    return web.json_response({"ok": ok, **status}, status=200 if ok else 503)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(json.loads(OPENAPI.read_text(encoding="utf-8")))

"""The sync API for a clinic that keeps its MIS (issue #33): ``PUT /api/v1/patients/{external_id}``
and ``PUT /api/v1/appointments/{external_id}`` upsert one item by the MIS's id; ``PUT
/api/v1/patients`` and ``PUT /api/v1/appointments`` take ``{"items": [...]}`` (each with its
``external_id``, at most 1000); ``GET`` of one item reads it back. A token with the ``mis:sync``
scope (``clinic-pbx token create NAME --scope mis:sync``). Idempotent: the same item twice
answers ``unchanged``; a refused one answers 422 with its fields' errors and writes nothing."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from crm import audit, mis_sync
from pbx.services import SERVICES
from web.api import authorized, error
from web.security import client_of

SCOPE = "mis:sync"
_NO_TOKEN = f"a valid API token with the {SCOPE} scope is required"


def setup_sync_api(app: web.Application) -> None:
    for kind in ("patients", "appointments"):
        app.router.add_put(f"/api/v1/{kind}", sync_batch)
        app.router.add_put(f"/api/v1/{kind}/{{external_id}}", sync_one)
        app.router.add_get(f"/api/v1/{kind}/{{external_id}}", read_one)


def _kind(request: web.Request) -> str:
    return "patients" if request.path.startswith("/api/v1/patients") else "appointments"


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, RecursionError):  # deeply nested arrays exhaust the parser's stack
        raise web.HTTPBadRequest(text=json.dumps({"error": "JSON expected"}), content_type="application/json") from None


async def _sync(request: web.Request, items: list[tuple[str, Any]]) -> list[mis_sync.ItemResult]:
    services = request.app[SERVICES]
    tz = services.settings.time_zone
    today = datetime.fromtimestamp(services.clock.now(), ZoneInfo(tz)).date()
    if _kind(request) == "patients":
        return await mis_sync.sync_patients(services.db, items, today)
    return await mis_sync.sync_appointments(services.db, items, today, tz)


async def _trace(request: web.Request, token: str, results: list[mis_sync.ItemResult]) -> None:
    services = request.app[SERVICES]
    done = [r for r in results if r.result in ("created", "updated")]
    if not done:
        return  # nothing changed: no audit row per unchanged poll of the MIS
    kind = _kind(request)
    await audit.record(services.db, f"API: {token}", f"api_sync_{kind}", services.clock.now(),
                       object_kind=kind[:-1], object_id=done[0].id if len(done) == 1 else "",
                       detail=f"изменено: {len(done)} из {len(results)}", address=client_of(request))


async def sync_one(request: web.Request) -> web.Response:
    token = await authorized(request, SCOPE)
    if token is None:
        return error(401, _NO_TOKEN)
    external_id = request.match_info["external_id"]
    body = await _body(request)
    [result] = await _sync(request, [(external_id, body)])
    await _trace(request, token, [result])
    status = 422 if result.result == "refused" else 201 if result.result == "created" else 200
    return web.json_response(result.as_json(), status=status)


async def sync_batch(request: web.Request) -> web.Response:
    token = await authorized(request, SCOPE)
    if token is None:
        return error(401, _NO_TOKEN)
    body = await _body(request)
    raw = body.get("items") if isinstance(body, dict) else None
    if not isinstance(raw, list) or not raw:
        return error(422, '{"items": [...]} expected: a list of items, each with its "external_id"')
    if len(raw) > mis_sync.BATCH_MAX:
        return error(413, f"at most {mis_sync.BATCH_MAX} items in one batch")
    items = []
    for item in raw:
        ext = item.get("external_id") if isinstance(item, dict) else None
        if isinstance(ext, bool) or not isinstance(ext, (str, int)) or not str(ext).strip():
            return error(422, 'every item needs its "external_id" (a string)')
        items.append((str(ext), item))
    results = await _sync(request, items)
    await _trace(request, token, results)
    refused = sum(r.result == "refused" for r in results)
    return web.json_response({"results": [r.as_json() for r in results], "refused": refused})


async def read_one(request: web.Request) -> web.Response:
    token = await authorized(request, SCOPE)
    if token is None:
        return error(401, _NO_TOKEN)
    db = request.app[SERVICES].db
    external_id = request.match_info["external_id"]
    found = await (mis_sync.patient_json(db, external_id) if _kind(request) == "patients"
                   else mis_sync.appointment_json(db, external_id))
    if found is None:
        return error(404, f"no {_kind(request)[:-1]} with this external_id")
    return web.json_response(found)

"""``POST /api/v1/requests``: a patient's booking request («заявка») from the clinic's site or an
aggregator, for the website callback robot (seed 003).

The sender names its source (``source`` in the JSON). A source with a secret signs: HMAC-SHA256
over ``timestamp + "." + body`` in ``X-Clinic-Signature: sha256=<hex>`` with
``X-Clinic-Timestamp`` (5 minutes' tolerance; a signature is accepted once, remembered in the
database across restarts). A source with only a token sends ``Authorization: Bearer <token>``.
Idempotent on (source, external id): a provider's retry returns the same request.

Answers: 201 created, 200 the same or joined request, 400 not JSON, 401 not authentic, 403 the
source is switched off, 413 too large, 422 a field is wrong (each error says which; also a number
no call may go to: premium, abroad, see «Защита от мошеннических звонков»), 429 the source sent
more than its share (10 a minute, 300 a day by default).
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from aiohttp import web

from crm import callbacks, phones, signatures, toll
from crm.rules import toll as toll_rules
from pbx.services import SERVICES
from web.api import error
from web.common import now_ts

MAX_BODY = 64 * 1024
LIMITS = {"external_id": 100, "name": 200, "doctor": 200, "service": 200, "desired_time": 100, "comment": 1000}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def setup_callback_api(app: web.Application) -> None:
    app.router.add_post("/api/v1/requests", receive_request)


def clean(value: object, limit: int) -> str:
    """A text field as it may be stored and shown: control characters out, trimmed, bounded."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return _CONTROL.sub("", text).strip()[:limit]


class Invalid(Exception):
    pass


def parse_request(body: dict[str, Any]) -> dict[str, Any]:
    """The request's fields, or Invalid naming the one that is wrong."""
    raw = clean(body.get("phone"), 40)
    if ext := phones.extension(raw):
        raise Invalid(f"phone: a number with an extension ({ext}) cannot be dialled;"
                      " give a direct number (the extension may go into the comment)")
    phone = phones.normalize(raw)
    if phone is None:
        raise Invalid("phone: not a phone number")
    for name, limit in LIMITS.items():
        value = body.get(name)
        if value is not None and not isinstance(value, str | int):
            raise Invalid(f"{name}: a string expected")
        if isinstance(value, str) and len(value) > limit:
            raise Invalid(f"{name}: longer than {limit} characters")
    utm = body.get("utm") or {}
    if not isinstance(utm, dict) or len(utm) > 10:
        raise Invalid("utm: an object of at most 10 tags expected")
    tags = {clean(k, 40): clean(v, 200) for k, v in utm.items()}
    return {
        "phone": phone, "external_id": clean(body.get("external_id"), 100) or None,
        "patient_name": clean(body.get("name"), 200), "doctor": clean(body.get("doctor"), 200),
        "service": clean(body.get("service"), 200), "desired": clean(body.get("desired_time"), 100),
        "comment": clean(body.get("comment"), 1000), "utm": {k: v for k, v in tags.items() if k},
    }


async def receive_request(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if (request.content_length or 0) > MAX_BODY:
        return error(413, "body larger than 64 KB")
    try:
        raw = await request.read()  # the whole body (aiohttp caps it at client_max_size)
    except web.HTTPRequestEntityTooLarge:
        return error(413, "body larger than 64 KB")
    if len(raw) > MAX_BODY:
        return error(413, "body larger than 64 KB")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # deeply nested arrays exhaust the parser's stack
        return error(400, "JSON expected")
    if not isinstance(body, dict):
        return error(400, "a JSON object expected")
    code = clean(body.get("source"), 60)
    src = await callbacks.source(services.db, code) if code else None
    if src is None:
        return error(401, "unknown source")
    refused = await _authentic(request, src, raw)
    if refused:
        return error(401, refused)
    if not src["enabled"]:
        return error(403, "this source is switched off")
    try:
        fields = parse_request(body)
    except Invalid as exc:
        return error(422, str(exc))
    now = now_ts(request)
    minute, day = await callbacks.source_counts(services.db, src["id"], now)
    refused = toll_rules.webhook_refusal(fields["phone"], minute, day, await toll.policy(services.db))
    if refused:
        await toll.record_trip(services.db, "", fields["phone"], f"заявка с сайта ({code}): {refused}", now)
        return error(429 if refused.startswith("more than") else 422, refused)
    intake = await callbacks.create_request(services.db, callbacks.NewRequest(
        source_name=src["spoken_name"], source_id=src["id"], branch_id=src["branch_id"], **fields), now_ts(request))
    if services.callbacks is not None:
        services.callbacks.wake()
    return web.json_response({"id": intake.request_id, "created": intake.created, "joined": intake.joined},
                             status=201 if intake.created else 200)


async def _authentic(request: web.Request, src: dict[str, Any], raw: bytes) -> str:
    """"" when the request is the source's own; else why not."""
    now = now_ts(request)
    if src["secret"]:
        sig = request.headers.get(signatures.SIGNATURE_HEADER)
        refused = signatures.check(src["secret"], request.headers.get(signatures.TIMESTAMP_HEADER), sig, raw, now)
        if refused:
            return refused
        assert sig is not None
        if not await callbacks.remember_signature(request.app[SERVICES].db, sig, now, 2 * signatures.TOLERANCE):
            return "replayed request"
        return ""
    if src["token"]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        sent = token.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent, src["token"].encode()):
            return ""
        return "bad or missing bearer token"
    return "the source has neither a secret nor a token"

"""«Настройки → Вебхуки в МИС» (issue #33): where the clinic's MIS receives calls, bookings from
calls, robot outcomes and closed callback requests; the signing secret; the delivery log with
«Отправить снова». Settings admins and the director only."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web
from yarl import URL

from crm import webhooks
from crm.rules import webhooks as rules
from pbx.services import SERVICES
from web.common import require_settings, trace

STATES = {"pending": "ждёт отправки", "sending": "отправляется", "delivered": "доставлено", "failed": "не доставлено"}


def receiver_url(text: str) -> str | None:
    """The receiver's address as given, or None when it is not a plain http(s) URL."""
    text = text.strip()
    if not text:
        return ""
    if len(text) > 500 or any(ch.isspace() or ord(ch) < 32 for ch in text):
        return None
    try:
        url = URL(text)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host or url.user or url.password:
        return None
    return text


async def _page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    db = request.app[SERVICES].db
    return aiohttp_jinja2.render_template("webhooks.html", request, {
        "cfg": await webhooks.config(db), "events": rules.EVENTS, "deliveries": await webhooks.recent(db),
        "states": STATES, "error": error, "max_attempts": rules.MAX_ATTEMPTS}, status=status)


async def webhooks_page(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    return await _page(request)


async def webhooks_save(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    form = await request.post()
    url = receiver_url(str(form.get("url", "")))
    enabled = form.get("enabled") == "on"
    if url is None:
        return await _page(request, "Адрес получателя: http:// или https:// без пробелов и пароля в адресе", 400)
    if enabled and not url:
        return await _page(request, "Чтобы включить вебхуки, укажите адрес получателя", 400)
    events = [str(e) for e in form.getall("event", []) if str(e) in rules.EVENTS]
    await webhooks.save_config(request.app[SERVICES].db, url, events, enabled,
                               new_secret=form.get("new_secret") == "on")
    await trace(request, "webhooks_saved", "settings", "", f"{'вкл' if enabled else 'выкл'}: {url[:100]}")
    raise web.HTTPSeeOther("/settings/webhooks")


async def webhook_resend(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    services = request.app[SERVICES]
    delivery = int(request.match_info["id"])
    await webhooks.resend(services.db, delivery, services.clock.now())
    if services.webhooks is not None:
        services.webhooks.wake()
    await trace(request, "webhook_resend", "webhook", delivery)
    raise web.HTTPSeeOther("/settings/webhooks")


async def webhook_payload(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    body = await webhooks.payload(request.app[SERVICES].db, int(request.match_info["id"]))
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(text=body, content_type="application/json")

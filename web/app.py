"""The panel's routes (Russian UI) and the JSON API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_session import get_session, new_session

from crm import audit, login_limits, sessions, shifts, telephony, users
from crm.aio import cancel_and_wait
from crm.login_limits import LoginThrottle
from crm.pg import PgDatabase
from crm.rules import browser_phone
from crm.signatures import ReplayGuard
from pbx.services import SERVICES
from pbx.settings import Settings
from pbx.version import VERSION
from web import (
    audit_page,
    booking,
    call_comments,
    contacts_page,
    dial,
    escort_pages,
    formatting,
    home,
    import_page,
    password_page,
    patients,
    provisioning,
    reports,
    settings_page,
    setup_page,
    tag_prompt,
    telephony_page,
    webhooks_page,
)
from web.api import setup_api
from web.appeals_page import setup_appeals_page
from web.browser_phone import PHONE_SECRET, setup_browser_phone
from web.callback_api import setup_callback_api
from web.callbacks_page import setup_callbacks_page
from web.common import ROW_ID, clinic_tz, money
from web.history import RECENT_PLAYS, history, history_csv, recording
from web.live import LIVE_HUB, LiveHub, live_events
from web.live_bus import LiveBus
from web.metrics import metrics_page
from web.security import (
    CSRF_FIELD,
    SESSION_TOKEN,
    client_of,
    csrf_token,
    current_user,
    setup_security,
)
from web.shift import shift_first, shift_form, shift_submit
from web.sync_api import setup_sync_api

HERE = Path(__file__).parent
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
DEVICE_COOKIE = "clinic_pbx_device"
DEVICE_COOKIE_AGE = 365 * 24 * 3600
log = logging.getLogger(__name__)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a full traceback at ERROR for every request its parser refuses (raw
    Cyrillic in a query string, a broken header): it answers 400 all the same, so one warning
    line is the truth; a real handler error keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "%s: refused with 400: %s", (
                record.getMessage(), str(exc.message).strip().splitlines()[0][:200])
            record.exc_info, record.exc_text = None, None
        return True


_MALFORMED = MalformedRequestFilter()


MOSCOW = ZoneInfo("Europe/Moscow")


def with_moscow_time(ts: float, tz: ZoneInfo) -> str:
    """Seed 002: the escort's notification and call times «at Moscow time»: the clinic's own
    time, and Moscow's beside it when the clinic is elsewhere."""
    local = datetime.fromtimestamp(ts, tz)
    msk = datetime.fromtimestamp(ts, MOSCOW)
    shown = local.strftime("%d.%m %H:%M")
    return shown if local.utcoffset() == msk.utcoffset() else f"{shown} (МСК {msk:%H:%M})"


def setup_web(app: web.Application, settings: Settings) -> None:
    logging.getLogger("aiohttp.server").addFilter(_MALFORMED)  # idempotent: one instance
    # sessions first: the template context processor reads the session
    setup_security(app, settings.web)
    app[LOGIN_THROTTLE] = LoginThrottle(limit=settings.web.login_attempts)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        context_processors=[_context],
    )
    env.globals["money"] = money
    # one formatting for the whole panel (web/formatting.py); a stored UTC moment is shown in the
    # clinic's time zone, which every page's context carries
    env.filters["localtime"] = lambda ts, tz: formatting.date_time(ts, tz)
    env.filters["dt"] = jinja2.pass_context(lambda ctx, v: formatting.date_time(v, ctx.get("clinic_tz")))
    env.filters["day"] = jinja2.pass_context(lambda ctx, v: formatting.day(v, ctx.get("clinic_tz")))
    env.filters["phone"] = formatting.phone
    env.filters["dur"] = formatting.duration
    env.filters["days_in"] = formatting.days_in_text
    env.filters["with_msk"] = with_moscow_time
    app.router.add_get("/", home.index)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_post("/presence", presence)
    app.router.add_get("/password", password_page.password_form)
    app.router.add_post("/password", password_page.password_submit)
    setup_api(app)
    setup_callback_api(app)
    setup_sync_api(app)
    setup_callbacks_page(app)
    setup_appeals_page(app)
    setup_browser_phone(app)
    app[LIVE_HUB] = LiveHub(app[SERVICES].db)
    app[RECENT_PLAYS] = {}

    async def live_hub(app: web.Application) -> AsyncIterator[None]:
        hub = app[LIVE_HUB]
        calls = app[SERVICES].calls
        if calls is not None:
            hub.attach(calls)
        publisher = asyncio.get_running_loop().create_task(hub.run(), name="live-hub")
        db = app[SERVICES].db
        if isinstance(db, PgDatabase):  # a chain: the other boxes' cards over LISTEN/NOTIFY
            hub.bus = LiveBus(hub, db)
            hub.bus.start()
        yield
        if hub.bus is not None:
            await hub.bus.stop()
        await cancel_and_wait(publisher)

    app.cleanup_ctx.append(live_hub)

    async def end_live_streams(app: web.Application) -> None:
        # open browser tabs would otherwise hold a stop for up to aiohttp's shutdown timeout
        app[LIVE_HUB].close_all()

    app.on_shutdown.append(end_live_streams)
    app.middlewares.append(shift_first)
    app.router.add_get("/shift", shift_form)
    app.router.add_post("/shift", shift_submit)
    app.router.add_get("/live", live_events)
    app.router.add_get("/calls", history)
    app.router.add_get("/calls.csv", history_csv)
    app.router.add_get(rf"/recordings/{{id:{ROW_ID}}}", recording)
    app.router.add_get("/patients", patients.patient_list)
    app.router.add_get("/patients/new", patients.patient_new_form)
    app.router.add_post("/patients/new", patients.patient_new_submit)
    app.router.add_get(rf"/patients/{{id:{ROW_ID}}}", patients.patient_card)
    app.router.add_get(rf"/patients/{{id:{ROW_ID}}}/edit", patients.patient_edit_form)
    app.router.add_post(rf"/patients/{{id:{ROW_ID}}}/edit", patients.patient_edit_submit)
    app.router.add_post(rf"/patients/{{id:{ROW_ID}}}/guardians", patients.patient_guardians_submit)
    app.router.add_get("/booking", booking.booking_form)
    app.router.add_post("/booking", booking.booking_submit)
    app.router.add_get("/schedule", booking.schedule_page)
    app.router.add_post(rf"/appointments/{{id:{ROW_ID}}}/status", booking.appointment_status)
    app.router.add_get("/tasks", booking.tasks_page)
    app.router.add_post("/tasks", booking.task_add)
    app.router.add_post(rf"/tasks/{{id:{ROW_ID}}}/done", booking.task_done)
    app.router.add_post(rf"/tasks/{{id:{ROW_ID}}}/move", booking.task_move)
    app.router.add_post("/waiting", booking.waiting_add)
    app.router.add_post("/dial", dial.dial)
    app.router.add_get("/comment", call_comments.comment_form)
    app.router.add_get("/incoming", call_comments.incoming_calls)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_post("/comment", call_comments.comment_submit)
    app.router.add_get("/calls/manual", call_comments.manual_form)
    app.router.add_post("/calls/manual", call_comments.manual_submit)
    app.router.add_post("/tags/prompt", tag_prompt.prompt)
    app.router.add_post("/tags/save", tag_prompt.save)
    app.router.add_post("/tags/dismiss", tag_prompt.dismiss)
    app.router.add_get("/contacts", contacts_page.contacts_page)
    app.router.add_post("/contacts", contacts_page.contacts_submit)
    app.router.add_get("/settings", settings_page.settings_form)
    app.router.add_post("/settings", settings_page.settings_submit)
    app.router.add_get("/settings/telephony", telephony_page.telephony_page)
    app.router.add_get("/setup", setup_page.setup_page)
    app.router.add_get("/settings/import", import_page.import_page)
    app.router.add_post("/settings/import", import_page.import_upload)
    app.router.add_get(rf"/settings/import/{{id:{ROW_ID}}}", import_page.import_run_page)
    app.router.add_post(rf"/settings/import/{{id:{ROW_ID}}}", import_page.import_run_submit)
    app.router.add_get(rf"/settings/import/{{id:{ROW_ID}}}.json", import_page.import_run_status)
    app.router.add_get(rf"/settings/import/{{id:{ROW_ID}}}/rejected.csv", import_page.import_rejections_csv)
    app.router.add_get("/settings/webhooks", webhooks_page.webhooks_page)
    app.router.add_post("/settings/webhooks", webhooks_page.webhooks_save)
    app.router.add_post(rf"/settings/webhooks/{{id:{ROW_ID}}}/resend", webhooks_page.webhook_resend)
    app.router.add_get(rf"/settings/webhooks/{{id:{ROW_ID}}}.json", webhooks_page.webhook_payload)
    app.router.add_post("/settings/telephony", telephony_page.telephony_submit)
    app.router.add_get("/escort", escort_pages.campaign_page)
    app.router.add_post("/escort/settings", escort_pages.settings_submit)
    app.router.add_post("/escort/call-now", escort_pages.call_now)
    app.router.add_get("/reports/escort", escort_pages.reports_page)
    app.router.add_get("/reports", reports.reports_page)
    app.router.add_get("/reports.csv", reports.reports_csv)
    app.router.add_get("/audit", audit_page.audit_page)
    app.router.add_get("/audit.csv", audit_page.audit_csv)
    app.router.add_post("/api/v1/gateway/status", escort_pages.gateway_status)
    app.router.add_post("/api/v1/gateway/reply", escort_pages.gateway_reply)
    app.router.add_get("/e/{token}", escort_pages.patient_link)
    # a desk phone's own settings file (its secret URL; the clinic's networks only)
    app.router.add_get(r"/provision/{token:[A-Za-z0-9_-]{16,64}}/{file:[A-Za-z0-9._-]{1,64}}", provisioning.provision)
    app.router.add_post("/e/{token}", escort_pages.patient_link_submit)
    app[dial.DIAL_TASKS] = {}
    app[escort_pages.WEBHOOK_REPLAYS] = ReplayGuard()

    async def dialling(app: web.Application) -> AsyncIterator[None]:
        yield
        for task in list(app[dial.DIAL_TASKS].values()):
            task.cancel()

    app.cleanup_ctx.append(dialling)
    app.router.add_static("/static/", HERE / "static")


async def _context(request: web.Request) -> dict[str, object]:
    user = await current_user(request) if not request.path.startswith("/e/") else None
    extension = None
    if user is not None:
        extension = await shifts.current_extension(request.app[SERVICES].db, user.user_id)
    return {
        "csrf_field": CSRF_FIELD,
        "csrf_token": await csrf_token(request),
        "user_name": user.name if user else None,
        "clinic_name": request.app[SERVICES].settings.clinic_name,
        "clinic_tz": clinic_tz(request),
        "path": request.path,
        "extension": extension,
        # not on the shift question itself: the phone starts once the shift is chosen
        "browser_phone": extension is not None and browser_phone.is_browser_extension(extension)
        and request.path != "/shift",
        "role": user.role if user else None,
        "history_access": user.history if user else None,
        "appeals_access": user.appeals if user else False,
        "version": VERSION,
    }


@aiohttp_jinja2.template("login.html")
async def login_form(request: web.Request) -> dict[str, object]:
    return {"error": None}


async def login_submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form = await request.post()
    login = str(form.get("login", ""))[:100]
    password = str(form.get("password", ""))[:200]
    address = client_of(request)
    secret = services.settings.web.cookie_secret
    mark = request.cookies.get(DEVICE_COOKIE, "")
    keys = login_limits.attempt_keys(login, address, mark if login_limits.is_known_device(secret, login, mark) else "")
    throttle = request.app[LOGIN_THROTTLE]
    started = services.clock.now()
    wait = throttle.begin(keys, started)  # counted now, before the hash: a parallel burst cannot slip through
    if wait > 0:
        log.warning("login refused for %r from %s: too many failures, retry in %.0f s", login, address, wait)
        resp = aiohttp_jinja2.render_template(
            "login.html", request,
            {"error": f"Слишком много неудачных попыток. Повторите через {int(wait) + 1} с."}, status=429)
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    user = await users.authenticate(services.db, login, password)
    if user is None:
        log.warning("failed login for %r from %s", login, address)
        await audit.record(services.db, login or "?", "login_failed", services.clock.now(), address=address)
        return aiohttp_jinja2.render_template(
            "login.html", request, {"error": "Неверный логин или пароль"}, status=401
        )
    throttle.succeeded(keys, started)
    uid = int(str(user["id"]))
    session = await new_session(request)  # a fresh session: no fixation
    session[SESSION_TOKEN] = await sessions.start(services.db, uid, services.clock.now(), address)
    session["user_id"] = uid
    await audit.record(services.db, str(user["login"]), "login", services.clock.now(), user_id=uid,
                       address=address)
    # the generated first password has done its job: it must not lie on disk any longer
    services.settings.initial_password_file.unlink(missing_ok=True)
    done = web.HTTPFound("/")
    # this device is known to the account from now on: others' guessing does not lock it out
    done.set_cookie(DEVICE_COOKIE, login_limits.device_mark(secret, str(user["login"])), max_age=DEVICE_COOKIE_AGE,
                    httponly=True, samesite="Strict", secure=services.settings.web.secure_cookie or None)
    raise done


async def presence(request: web.Request) -> web.Response:
    """The page saw its user at the keyboard: the login middleware's check has restarted the
    session's idle time; nothing else to do."""
    return web.Response(status=204)


async def logout(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    session = await get_session(request)
    user = await current_user(request)
    await sessions.end_token(services.db, session.get(SESSION_TOKEN), services.clock.now(), "logout")
    if user is not None:
        await audit.record(services.db, user.login, "logout", services.clock.now(), user_id=user.user_id,
                           address=client_of(request))
        if session.get(PHONE_SECRET):  # the browser phone's password dies with the login (#34)
            await telephony.close_browser_phone(services.db, user.user_id, services.clock.now())
    session.invalidate()
    raise web.HTTPFound("/login")

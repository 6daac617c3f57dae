"""Sessions, login requirement, CSRF and security headers for the panel.

The encrypted cookie holds only a random session token (and the CSRF token and the shift day);
``require_login`` looks the token up on every request (crm.sessions) and loads the user from
the database: a copied cookie stops working at logout, deactivation, a password or role change,
after the idle timeout and after the absolute limit. The user found is ``request[VIEWER]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from aiohttp_session import setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from crm import login_limits, sessions
from crm.sessions import SessionPolicy, SessionUser
from pbx.services import SERVICES
from pbx.settings import WebSettings

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TOKEN = "sid"
VIEWER = "viewer"  # request key: the SessionUser of a valid session
# /e/<token>: the patient's page behind a message link; the token is the capability
PUBLIC_PATHS = ("/login", "/static/", "/api/v1/health", "/e/", "/metrics", "/provision/")  # /metrics: loopback or its token
SESSION_POLICY = web.AppKey("session_policy", SessionPolicy)


def fernet_key(secret: str) -> bytes:
    """32 raw key bytes derived from the installation's cookie secret (aiohttp-session
    base64-encodes raw bytes into the Fernet key itself)."""
    return hashlib.sha256(secret.encode()).digest()


TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)


def client_of(request: web.BaseRequest) -> str:
    """The client's address: the peer, or what a configured trusted proxy says it forwarded for."""
    trusted = request.app.get(TRUSTED_PROXIES, ()) if isinstance(request, web.Request) else ()
    return login_limits.client_address(request.remote or "", request.headers.get("X-Forwarded-For", ""), trusted)


def setup_security(app: web.Application, web_settings: WebSettings) -> None:
    app[TRUSTED_PROXIES] = login_limits.trusted_networks(web_settings.trusted_proxies)
    storage = EncryptedCookieStorage(
        fernet_key(web_settings.cookie_secret),
        cookie_name="clinic_pbx_session",
        httponly=True,
        samesite="Lax",
        secure=web_settings.secure_cookie or None,
        max_age=web_settings.session_hours * 3600,
    )
    app[SESSION_POLICY] = SessionPolicy(idle_seconds=web_settings.idle_minutes * 60.0,
                                        absolute_seconds=web_settings.session_hours * 3600.0)
    setup_session(app, storage)
    app.on_response_prepare.append(security_headers)
    app.middlewares.insert(0, body_deadline(web_settings.body_timeout))
    app.middlewares.append(require_login)
    app.middlewares.append(csrf_protect)


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get(CSRF_FIELD)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return str(token)


# bodies their handler streams (a clinic's MIS export of many megabytes): each chunk has the
# deadline there, and the size is checked as it comes
STREAMED_UPLOADS = ("/settings/import",)


def body_deadline(seconds: float) -> Any:
    """A request's body must arrive within ``seconds`` of its head: one sent a byte every 20 s
    held a connection (and a handler) for ever. Read here, it is cached for the handler."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists and not (request.path in STREAMED_UPLOADS and request.method == "POST"):
            try:
                await asyncio.wait_for(request.read(), seconds)
            except TimeoutError:
                log.warning("HTTP: a request body from %s took over %.0f s; closed", client_of(request), seconds)
                if request.transport is not None:
                    request.transport.close()
                raise web.HTTPRequestTimeout(text="Слишком медленная отправка запроса") from None
        return await handler(request)

    return middleware


async def security_headers(request: web.BaseRequest, resp: web.StreamResponse) -> None:
    """On every response as it is prepared: pages, streamed CSV exports, errors and redirects
    alike (a middleware saw neither a streamed export, whose head had gone out, nor a raised
    error or redirect)."""
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'",
    )
    if not request.path.startswith("/static/"):
        # pages, CSV exports, recordings and API answers carry patients' data: no copy is
        # kept by the browser or a proxy
        resp.headers["Cache-Control"] = "no-store"


BACKGROUND_HEADER = "X-Clinic-Background"  # the page's own refresh, not the user: no activity


async def current_user(request: web.Request, *, touch: bool = True) -> SessionUser | None:
    """The user of the request's session, checked against the database (cached per request).
    A request the page makes by itself (``X-Clinic-Background: 1``) and the live stream's
    keep-alive (``touch`` False) do not count as the user being there."""
    if VIEWER in request:
        return request[VIEWER]
    session = await get_session(request)
    touch = touch and request.headers.get(BACKGROUND_HEADER) != "1" and request.path != "/live"
    user = await sessions.admit(request.app[SERVICES].db, session.get(SESSION_TOKEN),
                                request.app[SERVICES].clock.now(), request.app[SESSION_POLICY], touch=touch)
    if user is None and session.get("user_id"):
        session.invalidate()  # a dead session: forget it in the browser too
    request[VIEWER] = user
    return user


@web.middleware
async def require_login(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PUBLIC_PATHS) or request.path.startswith("/api/"):
        return await handler(request)
    user = await current_user(request)
    if user is None:
        if request.method == "GET" and request.path != "/live":
            raise web.HTTPFound("/login")
        raise web.HTTPUnauthorized(text="Сеанс завершён: войдите снова")
    if user.must_change and request.path not in ("/password", "/logout"):
        # an admin's one-time password opens nothing but the page that replaces it
        if request.method == "GET" and request.path != "/live":
            raise web.HTTPFound("/password")
        raise web.HTTPForbidden(text="Сначала смените пароль, выданный администратором")
    return await handler(request)


def same_token(sent: object, expected: object) -> bool:
    """Constant-time comparison that treats any non-ASCII or non-string value as wrong
    (``hmac.compare_digest`` raises on non-ASCII strings)."""
    if not isinstance(sent, str) or not isinstance(expected, str) or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected.encode())


@web.middleware
async def csrf_protect(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing browser request carries the session's CSRF token."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.path.startswith(("/api/", "/e/")):
        return await handler(request)
    session = await get_session(request)
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded", "multipart/form-data"
    ):
        sent = (await request.post()).get(CSRF_FIELD)
    if not same_token(sent, expected):
        raise web.HTTPForbidden(text="CSRF token missing or wrong")
    return await handler(request)

"""Sessions, login requirement, CSRF and security headers for the panel."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp_session import get_session
from aiohttp_session import setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# /e/<token>: the patient's page behind a message link; the token is the capability
PUBLIC_PATHS = ("/login", "/static/", "/api/v1/health", "/e/")


def fernet_key(secret: str) -> bytes:
    """32 raw key bytes derived from the installation's cookie secret (aiohttp-session
    base64-encodes raw bytes into the Fernet key itself)."""
    return hashlib.sha256(secret.encode()).digest()


def setup_security(app: web.Application, cookie_secret: str) -> None:
    storage = EncryptedCookieStorage(
        fernet_key(cookie_secret),
        cookie_name="clinic_pbx_session",
        httponly=True,
        samesite="Lax",
        max_age=12 * 3600,
    )
    setup_session(app, storage)
    app.middlewares.append(security_headers)
    app.middlewares.append(require_login)
    app.middlewares.append(csrf_protect)


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get(CSRF_FIELD)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return str(token)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'",
    )
    return resp


@web.middleware
async def require_login(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PUBLIC_PATHS) or request.path.startswith("/api/"):
        return await handler(request)
    session = await get_session(request)
    if not session.get("user_id"):
        raise web.HTTPFound("/login")
    return await handler(request)


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
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, str(expected)):
        raise web.HTTPForbidden(text="CSRF token missing or wrong")
    return await handler(request)

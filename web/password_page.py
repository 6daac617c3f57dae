"""``/password``: a user changes their own password (issue #30): the current one first, the new
one twice, held to ``crm.rules.passwords``. A user holding an admin's one-time password (a new
account, a reset) sees only this page until they have chosen their own; their other sessions end,
this one goes on."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from crm import audit, users
from crm.rules.passwords import password_problem
from pbx.services import SERVICES
from web.common import now_ts
from web.security import client_of, current_user


async def password_form(request: web.Request) -> web.StreamResponse:
    user = await current_user(request)
    if user is None:
        raise web.HTTPFound("/login")
    return aiohttp_jinja2.render_template("password.html", request, {"forced": user.must_change, "error": ""})


async def password_submit(request: web.Request) -> web.StreamResponse:
    user = await current_user(request)
    if user is None:
        raise web.HTTPFound("/login")
    services = request.app[SERVICES]
    form = await request.post()
    current, new, again = (str(form.get(k) or "")[:300] for k in ("current", "password", "again"))

    def refused(error: str, status: int = 400) -> web.StreamResponse:
        return aiohttp_jinja2.render_template("password.html", request, {"forced": user.must_change, "error": error},
                                              status=status)

    if not await users.verify_own(services.db, user.user_id, current):
        await audit.record(services.db, user.login, "password_change_failed", now_ts(request), user_id=user.user_id,
                           address=client_of(request))
        return refused("Текущий пароль неверен", 403)
    problem = "Новый пароль и повтор не совпадают" if new != again else password_problem(new, user.login, user.name)
    if not problem and new == current:
        problem = "Новый пароль совпадает с текущим"
    if problem:
        return refused(problem)
    await users.set_password(services.db, user.user_id, new, now_ts(request), keep_session=user.session_id)
    await audit.record(services.db, user.login, "password_change", now_ts(request), user_id=user.user_id,
                       address=client_of(request))
    raise web.HTTPFound("/?password=changed")

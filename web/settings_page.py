"""Clinic settings in the panel (settings admins and the director): tags, conversation
topics, users' roles and history rights, call distribution, this computer's workstation
name, and the telephony pause. Every change applies at once (read fresh by each request)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import audit, clinic_settings, comments, directory, distribution, schedule, tags, users
from crm.comments import CommentError
from crm.schedule import BookingError
from crm.tags import TagError
from pbx.services import SERVICES
from web.common import ROLE_LABELS, int_or_none, now_ts, require_settings
from web.live import WORKSTATION_COOKIE

HISTORY_RIGHTS = {"none": "Нет доступа", "read": "Чтение", "edit": "Редактирование"}
assert tuple(HISTORY_RIGHTS) == users.HISTORY_RIGHTS


async def _page(request: web.Request, error: str | None = None) -> dict[str, Any]:
    db = request.app[SERVICES].db
    return {
        "settings": await clinic_settings.get_all(db),
        "groups": await tags.groups(db),
        "topics": await comments.topics(db),
        "users": await directory.users_for_settings(db),
        "roles": ROLE_LABELS, "rights": HISTORY_RIGHTS,
        "rules": await distribution.list_rules(db),
        "branches": await directory.branches(db),
        "dids": await directory.clinic_numbers(db),
        "queues": ("reception-ringall", "reception-linear"),
        "workstation": request.cookies.get(WORKSTATION_COOKIE, ""),
        "doctors": await directory.doctors(db),
        "hours": await schedule.working_hours(db), "weekdays": schedule.WEEKDAYS,
        "error": error,
    }


@aiohttp_jinja2.template("settings.html")
async def settings_form(request: web.Request) -> dict[str, Any]:
    await require_settings(request)
    return await _page(request)


async def settings_submit(request: web.Request) -> web.StreamResponse:
    me = await require_settings(request)
    form = await request.post()
    db = request.app[SERVICES].db
    now = now_ts(request)
    action = str(form.get("action", ""))
    field = lambda name: str(form.get(name, "")).strip()  # noqa: E731

    async def trace(what: str, uid: int, detail: str) -> None:
        await audit.record(db, me.name, what, now, user_id=me.user_id, object_kind="user", object_id=uid,
                           detail=detail, address=request.remote or "")

    try:
        if action == "tags":
            await clinic_settings.put(db, "tags_enabled", bool(form.get("tags_enabled")))
            mode = field("tags_mode")
            if mode not in ("no_appointment", "always"):
                raise TagError("Выберите, когда показывать окно меток")
            await clinic_settings.put(db, "tags_mode", mode)
        elif action == "group_add":
            await tags.create_group(db, field("name"))
        elif action == "group_rename":
            await tags.rename_group(db, _id(form, "group"), field("name"))
        elif action == "group_delete":
            await tags.delete_group(db, _id(form, "group"))
        elif action == "tag_add":
            await tags.add_tag(db, _id(form, "group"), field("name"))
        elif action == "tag_delete":
            await tags.delete_tag(db, _id(form, "tag"))
        elif action == "topic_add":
            await comments.add_topic(db, field("name"))
        elif action == "user":
            role, right = field("role"), field("history_access")
            if role not in ROLE_LABELS or right not in HISTORY_RIGHTS:
                raise ValueError("Неверная роль или право")
            uid = _id(form, "user")
            if await users.update_access(db, uid, role, right, now):  # their sessions end
                await trace("user_update", uid, f"роль {role}, история {right}")
        elif action == "user_active":
            uid = _id(form, "user")
            active = field("active") == "1"
            if uid == me.user_id and not active:
                raise ValueError("Нельзя отключить самого себя")
            ended = await users.set_active(db, uid, active, now)
            await trace("user_update" if active else "user_deactivate", uid,
                        "включён" if active else f"отключён, завершено сеансов: {ended}")
        elif action == "user_password":
            uid = _id(form, "user")
            if len(field("password")) < 8:
                raise ValueError("Пароль короче 8 символов")
            await users.set_password(db, uid, field("password"), now)  # their sessions end
            await trace("user_update", uid, "пароль изменён")
        elif action == "user_add":
            login = field("login")[:50]
            if not login or len(field("password")) < 8 or await users.user_exists(db, login):
                raise ValueError("Логин занят или пароль короче 8 символов")
            uid = await users.create_user(db, login, field("password"), full_name=field("full_name")[:100],
                                          role=field("role") if field("role") in ROLE_LABELS else "administrator")
            await trace("user_create", uid, login)
        elif action == "rule_add":
            await distribution.add_rule(
                db, user_id=int_or_none(form.get("user")), workstation=field("workstation") or None,
                branch_id=int_or_none(form.get("branch")), did=field("did") or None,
                queue=field("queue") or None,
            )
        elif action == "rule_delete":
            await distribution.delete_rule(db, _id(form, "rule"))
        elif action == "doctor_add":
            await schedule.add_doctor(
                db, field("full_name"), field("specialty"), int_or_none(form.get("branch")),
                [int(d) for d in form.getall("weekday", []) if str(d).isdigit()],
                _minutes(field("start")), _minutes(field("end")), int_or_none(form.get("slot")) or 0,
            )
        elif action == "doctor_active":
            await schedule.set_doctor_active(db, _id(form, "doctor"), bool(form.get("active")))
        elif action == "telephony":
            await clinic_settings.put(db, "telephony_suspended", bool(form.get("suspended")))
        elif action == "workstation":
            resp = web.HTTPFound("/settings")
            name = field("workstation")[:50]
            if name:
                resp.set_cookie(WORKSTATION_COOKIE, name, max_age=10 * 365 * 86400, httponly=True,
                                samesite="Lax")
            else:
                resp.del_cookie(WORKSTATION_COOKIE)
            raise resp
        else:
            raise ValueError("Неизвестное действие")
        if not action.startswith("user"):
            await audit.record(db, me.name, "settings_update", now, user_id=me.user_id, object_kind="settings",
                               object_id=action, address=request.remote or "")
    except (TagError, CommentError, BookingError, ValueError) as exc:
        return aiohttp_jinja2.render_template("settings.html", request,
                                              await _page(request, str(exc)), status=400)
    raise web.HTTPFound("/settings")


def _id(form: Any, name: str) -> int:
    value = int_or_none(form.get(name))
    if value is None:
        raise ValueError("Неверный запрос")
    return value


def _minutes(hhmm: str) -> int:
    """"09:30" -> 570; anything else -> -1 (refused by the schedule)."""
    hours, _, minutes = hhmm.partition(":")
    if not (hours.isdigit() and minutes.isdigit()):
        return -1
    return int(hours) * 60 + int(minutes)

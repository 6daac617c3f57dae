"""Clinic settings in the panel (settings admins and the director): tags, conversation
topics, users' roles and history rights, call distribution, this computer's workstation
name, and the telephony pause. Every change applies at once (read fresh by each request)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import audit, clinic_settings, comments, directory, distribution, schedule, tags, users
from crm.comments import CommentError
from crm.rules.telephony import QUEUE_NAMES
from crm.rules.windows import CONVERSION_NEARBY
from crm.schedule import BookingError
from crm.tags import TagError
from pbx.services import SERVICES
from web.common import ROLE_LABELS, Viewer, int_or_none, now_ts, require_settings
from web.live import WORKSTATION_COOKIE
from web.security import client_of

HISTORY_RIGHTS = {"none": "Нет доступа", "read": "Чтение", "edit": "Редактирование"}
assert tuple(HISTORY_RIGHTS) == users.HISTORY_RIGHTS


# the page's sections (tabs by anchor); each action returns to its own
SECTIONS = {"telephony": "Телефония", "doctors": "Врачи", "users": "Пользователи", "tags": "Метки",
            "topics": "Темы и «Кто, тип»"}


def section_of(action: str) -> str:
    if action.startswith(("tag", "group")):
        return "tags"
    if action.startswith(("topic", "caller_group")):
        return "topics"
    if action.startswith("user"):
        return "users"
    if action.startswith("doctor"):
        return "doctors"
    return "telephony"


async def _page(request: web.Request, error: str | None = None, section: str = "telephony") -> dict[str, Any]:
    db = request.app[SERVICES].db
    return {
        "sections": SECTIONS, "open": section,
        "settings": await clinic_settings.get_all(db),
        "groups": await tags.groups(db),
        "topics": await comments.topics(db),
        "caller_groups": {k: v for k, v in (await comments.caller_types(db)).items() if k.startswith(comments.GROUP)},
        "users": await directory.users_for_settings(db),
        "roles": ROLE_LABELS, "rights": HISTORY_RIGHTS,
        "rules": await distribution.list_rules(db),
        "branches": await directory.branches(db),
        "dids": await directory.clinic_numbers(db),
        "queues": QUEUE_NAMES,
        "workstation": request.cookies.get(WORKSTATION_COOKIE, ""),
        "doctors": await directory.doctors(db),
        "hours": await schedule.working_hours(db), "weekdays": schedule.WEEKDAYS,
        "error": error,
    }


@aiohttp_jinja2.template("settings.html")
async def settings_form(request: web.Request) -> dict[str, Any]:
    await require_settings(request)
    return await _page(request)


@dataclass
class _Form:
    """One settings form post: what each action handler needs."""

    request: web.Request
    form: Any
    db: Any
    me: Viewer
    now: float

    def field(self, name: str) -> str:
        return str(self.form.get(name, "")).strip()

    def id(self, name: str) -> int:
        return _id(self.form, name)

    async def trace(self, what: str, uid: int, detail: str) -> None:
        await audit.record(self.db, self.me.name, what, self.now, user_id=self.me.user_id, object_kind="user",
                           object_id=uid, detail=detail, address=client_of(self.request))


async def _tags_mode(f: _Form) -> None:
    await clinic_settings.put(f.db, "tags_enabled", bool(f.form.get("tags_enabled")))
    mode = f.field("tags_mode")
    if mode not in ("no_appointment", "always"):
        raise TagError("Выберите, когда показывать окно меток")
    await clinic_settings.put(f.db, "tags_mode", mode)


async def _user_access(f: _Form) -> None:
    role, right = f.field("role"), f.field("history_access")
    if role not in ROLE_LABELS or right not in HISTORY_RIGHTS:
        raise ValueError("Неверная роль или право")
    uid = f.id("user")
    appeals = f.form.get("appeals_access") == "1"
    if await users.update_access(f.db, uid, role, right, f.now, appeals=appeals):  # their sessions end
        await f.trace("user_update", uid, f"роль {role}, история {right}, история обращений {'да' if appeals else 'нет'}")


async def _user_active(f: _Form) -> None:
    uid, active = f.id("user"), f.field("active") == "1"
    if uid == f.me.user_id and not active:
        raise ValueError("Нельзя отключить самого себя")
    ended = await users.set_active(f.db, uid, active, f.now)
    await f.trace("user_update" if active else "user_deactivate", uid,
                  "включён" if active else f"отключён, завершено сеансов: {ended}")


def one_time_password() -> str:
    """What an admin hands over (a new account, a reset): shown once, changed at the first login."""
    return "-".join("".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(5)) for _ in range(4))


async def _user_password(f: _Form) -> dict[str, str]:
    uid = f.id("user")
    login = next((str(u["login"]) for u in await directory.users_for_settings(f.db) if u["id"] == uid), "")
    if not login:
        raise ValueError("Нет такого пользователя")
    password = one_time_password()
    await users.set_password(f.db, uid, password, f.now, one_time=True)  # their sessions end
    await f.trace("user_update", uid, "пароль сброшен: выдан одноразовый")
    return {"login": login, "password": password}


async def _user_add(f: _Form) -> dict[str, str]:
    login = f.field("login")[:50]
    if not login or await users.user_exists(f.db, login):
        raise ValueError("Логин пуст или занят")
    role = f.field("role") if f.field("role") in ROLE_LABELS else "administrator"
    password = one_time_password()
    uid = await users.create_user(f.db, login, password, full_name=f.field("full_name")[:100], role=role,
                                  one_time=True)
    await f.trace("user_create", uid, login)
    return {"login": login, "password": password}


async def _rule_add(f: _Form) -> None:
    await distribution.add_rule(
        f.db, user_id=int_or_none(f.form.get("user")), workstation=f.field("workstation") or None,
        branch_id=int_or_none(f.form.get("branch")), did=f.field("did") or None, queue=f.field("queue") or None,
    )


async def _doctor_add(f: _Form) -> None:
    await schedule.add_doctor(
        f.db, f.field("full_name"), f.field("specialty"), int_or_none(f.form.get("branch")),
        [int(d) for d in f.form.getall("weekday", []) if str(d).isdigit()],
        _minutes(f.field("start")), _minutes(f.field("end")), int_or_none(f.form.get("slot")) or 0,
    )


async def _hide_caller(f: _Form) -> None:
    if not await directory.hide_caller(f.db, f.field("did"), bool(f.form.get("hidden"))):
        raise ValueError("Нет такого номера клиники")


async def _workstation(f: _Form) -> None:
    resp = web.HTTPFound("/settings#telephony")
    name = f.field("workstation")[:50]
    if name:
        resp.set_cookie(WORKSTATION_COOKIE, name, max_age=10 * 365 * 86400, httponly=True, samesite="Lax")
    else:
        resp.del_cookie(WORKSTATION_COOKIE)
    raise resp


ACTIONS: dict[str, Callable[[_Form], Awaitable[Any]]] = {
    "tags": _tags_mode,
    "group_add": lambda f: tags.create_group(f.db, f.field("name")),
    "group_rename": lambda f: tags.rename_group(f.db, f.id("group"), f.field("name")),
    "group_delete": lambda f: tags.delete_group(f.db, f.id("group")),
    "tag_add": lambda f: tags.add_tag(f.db, f.id("group"), f.field("name")),
    "tag_delete": lambda f: tags.delete_tag(f.db, f.id("tag")),
    "topic_add": lambda f: comments.add_topic(f.db, f.field("name")),
    "topic_retire": lambda f: comments.retire_topic(f.db, f.id("topic")),
    "caller_group_add": lambda f: comments.add_caller_group(f.db, f.field("name"), bool(f.form.get("counts"))),
    "caller_group_retire": lambda f: comments.retire_caller_group(f.db, f.id("group")),
    "user": _user_access,
    "user_active": _user_active,
    "user_password": _user_password,
    "user_add": _user_add,
    "rule_add": _rule_add,
    "rule_delete": lambda f: distribution.delete_rule(f.db, f.id("rule")),
    "doctor_add": _doctor_add,
    "doctor_active": lambda f: schedule.set_doctor_active(f.db, f.id("doctor"), bool(f.form.get("active"))),
    "telephony": lambda f: clinic_settings.put(f.db, "telephony_suspended", bool(f.form.get("suspended"))),
    "hide_caller": _hide_caller,
    "branch_message_name": lambda f: directory.set_message_name(f.db, f.id("branch"), f.field("message_name")),
    "booking": lambda f: clinic_settings.put(f.db, "notify_default", bool(f.form.get("notify_default"))),
    "conversion": lambda f: clinic_settings.put(f.db, CONVERSION_NEARBY, bool(f.form.get("nearby"))),
    "workstation": _workstation,
}


async def settings_submit(request: web.Request) -> web.StreamResponse:
    me = await require_settings(request)
    f = _Form(request, await request.post(), request.app[SERVICES].db, me, now_ts(request))
    action = f.field("action")
    try:
        handler = ACTIONS.get(action)
        if handler is None:
            raise ValueError("Неизвестное действие")
        one_time = await handler(f)
        if not action.startswith("user"):  # the user actions leave their own audit line
            await audit.record(f.db, me.name, "settings_update", f.now, user_id=me.user_id, object_kind="settings",
                               object_id=action, address=client_of(request))
    except (TagError, CommentError, BookingError, ValueError) as exc:
        return aiohttp_jinja2.render_template("settings.html", request,
                                              await _page(request, str(exc), section_of(action)), status=400)
    if isinstance(one_time, dict) and one_time.get("password"):  # shown once, on this answer only
        return aiohttp_jinja2.render_template("settings.html", request,
                                              await _page(request, None, section_of(action)) | {"one_time": one_time})
    raise web.HTTPFound(f"/settings#{section_of(action)}")


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

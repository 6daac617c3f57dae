"""Click-to-call from the panel (seed 000): ``POST /dial`` rings the administrator's desk
phone first (AMI Originate), then the patient. Refused with a clear message when the user
has no shift phone, is already on a call, or telephony is suspended; a failure after the
request (the phone not picked up, Asterisk refusing) arrives as a red notice over /live."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from crm import clinic_settings, directory, identify, phones, shifts
from crm.rules.chain import box_rings
from pbx.outbound.originate import OriginateError, OriginateRequest, originate
from pbx.services import SERVICES, Services
from web.common import viewer
from web.live import LIVE_HUB

log = logging.getLogger(__name__)
DIAL_TASKS = web.AppKey("dial_tasks", dict)  # extension -> its originate task: one at a time


class DialRefused(Exception):
    pass


async def dial(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    me = await viewer(request)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "Неверный запрос"}, status=400)
    number = str(body.get("number", ""))[:30] if isinstance(body, dict) else ""
    e164 = phones.normalize(number)
    try:
        if e164 is None:
            raise DialRefused("Неверный номер телефона")
        extension = await shifts.current_extension(services.db, me.user_id)
        if extension is None:
            raise DialRefused("Выберите телефон для смены: звонить из программы может только"
                              " сотрудник, привязанный к телефону")
        if not await _on_this_box(services, extension):
            raise DialRefused(f"Телефон {extension} подключён к АТС другого филиала: позвоните из"
                              " панели этого филиала")
        if await clinic_settings.get(services.db, "telephony_suspended"):
            raise DialRefused("Модуль «Телефония» приостановлен")
        if services.ami is None or not services.ami.connected:
            raise DialRefused("Нет связи с АТС")
        busy = services.calls.live.get(extension, {}) if services.calls else {}
        if any(card.status != "ended" for card in busy.values()):
            raise DialRefused("Вы уже разговариваете: завершите текущий звонок")
        pending = request.app[DIAL_TASKS]
        if extension in pending:
            raise DialRefused("Звонок уже набирается")
    except DialRefused as exc:
        return web.json_response({"error": str(exc)}, status=409)
    who = identify.identify(services.db, e164)
    req = OriginateRequest(
        extension=extension, number=e164.lstrip("+"), user_id=me.user_id,
        display=identify.short_name(who.candidates[0].full_name) if len(who.candidates) == 1 else "",
    )
    task = asyncio.get_running_loop().create_task(_place(request.app, req))
    pending[extension] = task
    task.add_done_callback(lambda _: pending.pop(extension, None))
    return web.json_response({"ok": True, "extension": extension}, status=202)


async def _on_this_box(services: Services, extension: str) -> bool:
    """In a chain this process's Asterisk dials from its own branches' desk phones only."""
    box = services.settings.asterisk.branches
    if not box:
        return True
    return box_rings(await directory.desk_phone_branch(services.db, extension), box)


async def _place(app: web.Application, req: OriginateRequest) -> None:
    services = app[SERVICES]
    try:
        assert services.ami is not None
        await originate(services.ami, req)
    except (OriginateError, TimeoutError, ConnectionError, AssertionError) as exc:
        log.info("click-to-call from %s failed: %s", req.extension, exc)
        app[LIVE_HUB].notify_user(req.user_id or 0, "Не получилось позвонить: телефон "
                                  f"{req.extension} не ответил или АТС отказала", "error")
    except Exception:
        log.exception("click-to-call from %s failed", req.extension)
        app[LIVE_HUB].notify_user(req.user_id or 0, "Не получилось позвонить", "error")

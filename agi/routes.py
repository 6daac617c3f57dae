"""FastAGI routes. They read the CRM to answer Asterisk during a call; they never write calls
(the writes: a caller outside the hours becomes a callback request; a refused outgoing call is
audited)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from agi.server import AgiRequest
from crm import callbacks, identify, phones
from crm import toll as toll_store
from crm.clock import Clock
from crm.db import Database
from crm.rules import toll

log = logging.getLogger(__name__)

# CALLERID(name) is shown on the desk phone's small display: keep it short.
MAX_DISPLAY = 40


def incoming_route(db: Database) -> Callable[[AgiRequest], Awaitable[None]]:
    """``agi://host:port/incoming``: identify the caller, set the display name and CLINIC_*.

    CALLERID(name) becomes the patient's full name, "Пациенты: N" (several patients or a
    guardian's wards), "Сотрудник: …" or "Контрагент: …"; an unknown caller keeps the number.
    """

    async def incoming(request: AgiRequest) -> None:
        raw = request.headers.get("agi_callerid", "")
        e164 = phones.normalize(raw)
        who = identify.identify(db, e164)
        values = {
            "CLINIC_CALLER_E164": e164 or "",
            "CLINIC_CALLER_TYPE": who.kind,
            "CLINIC_PATIENT_ID": str(who.patient_id or ""),
        }
        if who.display:
            values["CALLERID(name)"] = who.display[:MAX_DISPLAY]
        values["CLINIC_AGI_STATUS"] = "OK"
        # one round trip: Asterisk holds the ringing caller while we answer
        await request.set_variables(values)
        log.debug("incoming %s -> %s %s", raw, who.kind, who.patient_id or who.display)

    return incoming


def after_hours_route(db: Database, clock: Clock) -> Callable[[AgiRequest], Awaitable[None]]:
    """``agi://host:port/after_hours,<clinic number>``: the caller of a closed number becomes a
    callback request (its robot calls at opening); CLINIC_CALLBACK_REQUEST names it."""

    async def after_hours(request: AgiRequest) -> None:
        e164 = phones.normalize(request.headers.get("agi_callerid", ""))
        did = "".join(ch for ch in request.headers.get("agi_arg_1", "") if ch.isdigit())
        if not e164:
            log.info("after hours on %s: the caller's number is hidden, no callback request", did)
            await request.set_variable("CLINIC_CALLBACK_REQUEST", "")
            return
        intake = await callbacks.after_hours_request(db, e164, did, clock.now())
        log.info("after hours on %s: callback request %s (%s)", did, intake.request_id,
                 "joined" if intake.joined else "new" if intake.created else "known")
        await request.set_variable("CLINIC_CALLBACK_REQUEST", str(intake.request_id))

    return after_hours


def outgoing_check_route(db: Database, clock: Clock, counter: toll.CallCounter | None = None,
                         ) -> Callable[[AgiRequest], Awaitable[None]]:
    """``agi://host:port/outgoing_check,<number>,<outgoing calls now>``: may this call leave
    (issue #30, toll fraud)? CLINIC_OUT_OK = 1 or 0, CLINIC_OUT_REFUSED = why. The caller is the
    desk phone whose channel asks (``PJSIP/104-…``); a patient's channel sent on, or a robot's,
    is nobody's phone. A refusal is audited and mailed."""
    counter = counter or toll.CallCounter()

    async def outgoing_check(request: AgiRequest) -> None:
        number = request.headers.get("agi_arg_1", "")[:40]
        raw = request.headers.get("agi_arg_2", "")
        concurrent = int(raw) if raw.isdigit() else 0
        endpoint = request.headers.get("agi_channel", "").partition("/")[2].rpartition("-")[0]
        caller = endpoint if endpoint.isdigit() else ""
        reason = await toll_store.check(db, number, caller, clock.now(), counter, concurrent)
        if reason:
            log.warning("outgoing call to %s from %s refused: %s", number, caller or "-", reason)
        await request.set_variables({"CLINIC_OUT_OK": "0" if reason else "1", "CLINIC_OUT_REFUSED": reason})

    return outgoing_check

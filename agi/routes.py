"""FastAGI routes. They read the CRM to answer Asterisk during a call; they never write calls."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from agi.server import AgiRequest
from crm import patients, phones
from crm.db import Database

log = logging.getLogger(__name__)

# CALLERID(name) is shown on the desk phone's small display: keep it short.
MAX_DISPLAY = 40


def incoming_route(db: Database) -> Callable[[AgiRequest], Awaitable[None]]:
    """``agi://host:port/incoming``: identify the caller, set the display name and CLINIC_*."""

    async def incoming(request: AgiRequest) -> None:
        raw = request.headers.get("agi_callerid", "")
        e164 = phones.normalize(raw)
        caller_type, name, patient_id = "unknown", "", ""
        if e164 is not None:
            found = await patients.find_by_phone(db, e164)
            if len(found) == 1:
                caller_type, name, patient_id = "patient", found[0].full_name, str(found[0].id)
            elif len(found) > 1:
                caller_type, name = "patients", f"Пациенты: {len(found)}"
        await request.set_variable("CLINIC_CALLER_E164", e164 or "")
        await request.set_variable("CLINIC_CALLER_TYPE", caller_type)
        await request.set_variable("CLINIC_PATIENT_ID", patient_id)
        if name:
            await request.set_variable("CALLERID(name)", name[:MAX_DISPLAY])
        await request.set_variable("CLINIC_AGI_STATUS", "OK")
        log.info("incoming %s -> %s %s", raw, caller_type, patient_id or name)

    return incoming

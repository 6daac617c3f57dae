"""«Первый запуск»: a real clinic's set-up as a list of steps (issue #29), each verified live —
the provider registered, the phones online — with a link to where each is done."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crm import directory
from crm import telephony as store
from crm.rules.setup import SetupFacts, setup_finished, setup_steps
from pbx.services import SERVICES, Services
from web.common import require_settings
from web.telephony_page import phones_with_state, state_of


async def facts_of(services: Services) -> SetupFacts:
    state = await state_of(services)
    providers = [p for p in await store.all_providers(services.db) if p.enabled]
    phones = await phones_with_state(services)
    users = await directory.users_for_settings(services.db)
    return SetupFacts(
        clinic_name=services.settings.clinic_name, time_zone=services.settings.time_zone,
        branches=len(await directory.branches(services.db)), providers=len(providers),
        providers_registered=sum(1 for s in state["statuses"].values() if s.code in ("registered", "reachable")),
        numbers=len(await directory.clinic_number_routes(services.db)), phones=len(phones),
        phones_online=sum(1 for p in phones if p["online"]),
        administrators=sum(1 for u in users if u["active"] and u["role"] == "administrator"),
        telephony_applied=state["applied"] if state["managed"] else None)


@aiohttp_jinja2.template("setup.html")
async def setup_page(request: web.Request) -> dict[str, Any]:
    await require_settings(request)
    steps = setup_steps(await facts_of(request.app[SERVICES]))
    return {"steps": steps, "finished": setup_finished(steps)}

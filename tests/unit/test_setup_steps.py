"""#29: the first run of a real clinic as steps, each done only when verified live."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from crm.rules.setup import CHECK, DONE, TODO, SetupFacts, setup_finished, setup_steps

EMPTY = SetupFacts(clinic_name="Клиника", time_zone="Europe/Moscow", branches=0, providers=0,
                   providers_registered=0, numbers=0, phones=0, phones_online=0, administrators=0,
                   telephony_applied=True)


def states(f: SetupFacts) -> dict[str, str]:
    return {s.key: s.state for s in setup_steps(f)}


def test_an_empty_clinic_has_everything_to_do() -> None:
    assert states(EMPTY) == {"clinic": TODO, "provider": TODO, "numbers": TODO, "phones": TODO, "queues": TODO,
                             "users": TODO, "applied": DONE}
    assert not setup_finished(setup_steps(EMPTY))


def test_typed_but_not_working_is_not_done() -> None:
    typed = dataclasses.replace(EMPTY, clinic_name="Улыбка", branches=1, providers=1, numbers=2, phones=3,
                                administrators=2, telephony_applied=False)
    s = states(typed)
    assert s["provider"] == CHECK and s["phones"] == CHECK and s["applied"] == CHECK
    assert s["clinic"] == DONE and s["numbers"] == DONE and s["users"] == DONE
    working = dataclasses.replace(typed, providers_registered=1, phones_online=1, telephony_applied=True)
    assert setup_finished(setup_steps(working))


async def test_the_page_lists_the_steps(tmp_path: Path) -> None:
    from tests.unit.panel_client import settings_admin_panel

    async with settings_admin_panel(tmp_path) as (_, client):
        page = await (await client.get("/setup")).text()
        for key in ("clinic", "provider", "numbers", "phones", "queues", "users", "applied"):
            assert f'data-step="{key}"' in page
        assert 'data-step="provider" data-state="todo"' in page and "data-finished" not in page

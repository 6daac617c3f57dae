"""No call is lost: calls that end while clinic-pbx is down are backfilled from Asterisk's CDR
after it starts again (once, no duplicates), and a call in progress across the restart is
adopted from CoreShowChannels and recorded when it ends."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from crm.call_listing import CallFilter, list_calls
from pbx.app import SERVICES, build_app
from pbx.outbound.sipp import start_operator_call
from tests.integration.helpers import (
    assert_matches_cdr,
    start_phones,
    stop_all,
    wait_call,
    wait_cdr,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]


async def boot(settings):
    app = build_app(settings, manage_asterisk=False)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    services = app[SERVICES]
    assert await services.ami.wait_connected(10)
    await asyncio.wait_for(services.calls.resynced.wait(), 10)
    return srv, services


def linkedid_from_cdr(path: Path, caller: str) -> str:
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT linkedid FROM cdr WHERE src = ? ORDER BY AcctId DESC LIMIT 1",
                          (caller,)).fetchone()
    finally:
        con.close()
    assert row, "no CDR row"
    return row[0]


async def test_calls_while_down_are_backfilled_once(asterisk, test_settings, tmp_path: Path) -> None:
    settings = dataclasses.replace(test_settings, database=tmp_path / "crm.sqlite")
    srv, services = await boot(settings)
    await srv.close()  # clinic-pbx goes down; Asterisk keeps working

    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 800}})
    call = await start_operator_call(settings, "+79991110001", "74951110001", tmp_path, talk_ms=1500)
    assert await call.wait(30) == 0
    await stop_all(*phones.values())
    phones = await start_phones(services, tmp_path, {})  # all ring, nobody answers
    missed = await start_operator_call(settings, "+79991110002", "74951110001", tmp_path,
                                       cancel_after_ms=1000, name="op2")
    assert await missed.wait(30) == 0
    await stop_all(*phones.values())
    lid_answered = linkedid_from_cdr(settings.cdr_db_path, "79991110001")
    lid_missed = linkedid_from_cdr(settings.cdr_db_path, "79991110002")

    srv, services = await boot(settings)  # back up: resync + backfill
    try:
        answered = await wait_call(services, lid_answered)
        assert answered["source"] == "cdr" and answered["answered_by_ext"] == "101"
        assert_matches_cdr(answered, await wait_cdr(settings.cdr_db_path, lid_answered))
        gone = await wait_call(services, lid_missed)
        assert gone["call_type"] == "missed" and gone["source"] == "cdr"
        await services.calls.flush()
        before = await list_calls(services.db, CallFilter(limit=1000))
        assert await services.calls.backfill(0) == 0  # again: nothing new
        await services.calls.flush()
        after = await list_calls(services.db, CallFilter(limit=1000))
        assert len(after) == len(before)
        ids = [r["linkedid"] for r in after]
        assert ids.count(lid_answered) == 1 and ids.count(lid_missed) == 1
    finally:
        await srv.close()


async def test_call_in_progress_across_a_restart(asterisk, test_settings, tmp_path: Path) -> None:
    settings = dataclasses.replace(test_settings, database=tmp_path / "crm.sqlite")
    srv, services = await boot(settings)
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 500}})
    call = await start_operator_call(settings, "+79991110003", "74951110001", tmp_path, talk_ms=5000)
    for _ in range(100):  # wait until 101 talks
        if [c.status for c in services.calls.live.get("101", {}).values()] == ["talking"]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"101 never answered: {services.calls.live}")
    await srv.close()
    srv, services = await boot(settings)
    try:
        cards = services.calls.live.get("101", {})
        assert [c.status for c in cards.values()] == ["talking"]  # rebuilt from CoreShowChannels
        assert await call.wait(30) == 0
        await stop_all(*phones.values())
        lid = linkedid_from_cdr(settings.cdr_db_path, "79991110003")
        rec = await wait_call(services, lid, timeout=20)
        assert rec["source"] == "cdr" and rec["answered_by_ext"] == "101"
        assert_matches_cdr(rec, await wait_cdr(settings.cdr_db_path, lid))
        assert services.calls.live.get("101", {}) == {}
    finally:
        await srv.close()

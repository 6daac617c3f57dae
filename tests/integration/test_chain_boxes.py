"""A clinic chain: two branches, each with its own embedded Asterisk and its own clinic-pbx
process, one CRM on PostgreSQL. Calls on both boxes land once each and agree with each box's own
CDR; the second box's linkedids carry its name; each process's panel shows both boxes' calls;
a box's live card reaches the other branch's panel."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crm.calls import CallFilter, list_calls
from pbx.app import SERVICES, Services, build_app
from pbx.embedded import EmbeddedAsterisk
from pbx.settings import Settings
from pbx.sipp import start_operator_call
from tests.conftest import TEST_STATE
from tests.integration.helpers import (
    assert_matches_cdr,
    start_phones,
    stop_all,
    wait_call,
    wait_cdr,
)
from tests.pg_cluster import PgCluster
from web.live import LIVE_HUB

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]


def second_box(settings: Settings) -> Settings:
    """Branch B: its own ports, runtime folder and box name; the same installed Asterisk root."""
    a = settings.asterisk
    return dataclasses.replace(
        settings, state_dir=TEST_STATE.parent / "test-state-box-b",
        asterisk=dataclasses.replace(a, system_name="sadovaya", sip_port=a.sip_port + 1000,
                                     ami_port=a.ami_port + 1000, http_port=a.http_port + 1000,
                                     agi_port=a.agi_port + 1000, rtp_start=a.rtp_start - 1000,
                                     rtp_end=a.rtp_end - 1000, operator_port=a.operator_port + 1000,
                                     phone_port_base=a.phone_port_base + 1000))


@pytest.fixture
def box_b(asterisk: EmbeddedAsterisk, test_settings: Settings) -> Iterator[Settings]:
    settings = second_box(test_settings)
    ast = EmbeddedAsterisk(settings)
    ast.stop()
    (settings.asterisk_var / "lib" / "astdb.sqlite3").unlink(missing_ok=True)
    ast.start()
    try:
        yield settings
    finally:
        ast.stop()


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[web.Application]:
    app = build_app(settings, manage_asterisk=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    services = app[SERVICES]
    try:
        assert await services.ami.wait_connected(15)
        await asyncio.wait_for(services.calls.resynced.wait(), 15)
        yield app
    finally:
        await server.close()


async def answered_call(services: Services, caller: str, tmp: Path, name: str) -> None:
    phones = await start_phones(services, tmp / name, {"101": {"ring_ms": 600}})
    call = await start_operator_call(services.settings, caller, "74951110001", tmp / name, talk_ms=1200,
                                     name=f"op-{name}")
    assert await call.wait(30) == 0
    await stop_all(*phones.values())


async def test_two_boxes_one_crm(asterisk, box_b: Settings, test_settings: Settings, pg_cluster: PgCluster,
                                 tmp_path: Path) -> None:
    url = pg_cluster.new_database()
    settings_a = dataclasses.replace(test_settings, database=url)
    settings_b = dataclasses.replace(box_b, database=url)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    async with serve(settings_a) as app_a, serve(settings_b) as app_b:
        a, b = app_a[SERVICES], app_b[SERVICES]
        await asyncio.wait_for(a.db.listening.wait(), 10)  # type: ignore[union-attr]
        await asyncio.wait_for(b.db.listening.wait(), 10)  # type: ignore[union-attr]
        watcher = app_b[LIVE_HUB].subscribe(0, "101")  # B's panel, a tab watching phone 101
        await asyncio.gather(answered_call(a, "+79991110001", tmp_path, "a"),
                             answered_call(b, "+79991110002", tmp_path, "b"))
        lids = {}
        for services, caller in ((a, "79991110001"), (b, "79991110002")):
            con = sqlite3.connect(f"file:{services.settings.cdr_db_path}?mode=ro", uri=True)
            row = con.execute("SELECT linkedid FROM cdr WHERE src = ? ORDER BY AcctId DESC LIMIT 1",
                              (caller,)).fetchone()
            con.close()
            assert row, f"no CDR row on {services.settings.asterisk.system_name or 'box A'}"
            lids[caller] = row[0]
            call = await wait_call(services, row[0])
            assert call["answered_by_ext"] == "101"
            assert_matches_cdr(call, await wait_cdr(services.settings.cdr_db_path, row[0]))
        assert lids["79991110002"].startswith("sadovaya-") and not lids["79991110001"].startswith("sadovaya-")
        listings = []
        for services in (a, b):  # each process sees both boxes' calls, each once (with the
            await services.calls.flush()  # boxes' older calls that their CDR backfills brought)
            listed = [c["linkedid"] for c in await list_calls(services.db, CallFilter(limit=1000))]
            assert all(listed.count(lid) == 1 for lid in lids.values())
            assert len(listed) == len(set(listed))
            listings.append(sorted(listed))
        assert listings[0] == listings[1]
        # A's call (no box prefix) reached B's panel over the live channel
        seen = []
        while not watcher.queue.empty():
            seen.append(watcher.queue.get_nowait())
        assert any(m.get("type") == "card" and m["card"]["linkedid"] == lids["79991110001"] for m in seen)


async def test_postgresql_down_for_30_s_during_calls(asterisk, test_settings: Settings, pg_cluster: PgCluster,
                                                     tmp_path: Path) -> None:
    """The centre stops for 30 s while a branch takes calls: a ringing caller is still named from
    the branch's local copy, nothing is lost, nothing doubled, and each call agrees with the CDR."""
    from crm import patients

    settings = dataclasses.replace(test_settings, database=pg_cluster.new_database())
    async with serve(settings) as app:
        services = app[SERVICES]
        await patients.add_patient(services.db, "Петрова", "Анна", phone_numbers=("+79991110003",))
        assert await services.db.refresh_copy()  # type: ignore[union-attr]
        await services.calls.flush()
        before = len(await list_calls(services.db, CallFilter(limit=1000)))
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(pg_cluster.stop_server)
        try:
            for d in ("x", "y"):
                (tmp_path / d).mkdir()
            await answered_call(services, "+79991110003", tmp_path, "x")
            await answered_call(services, "+79991110004", tmp_path, "y")
            assert services.calls.write_failing_since is not None
            await asyncio.sleep(max(0.0, 30 - (asyncio.get_running_loop().time() - started)))
        finally:
            await asyncio.to_thread(pg_cluster.start_server)
        for caller in ("79991110003", "79991110004"):
            con = sqlite3.connect(f"file:{settings.cdr_db_path}?mode=ro", uri=True)
            lid = con.execute("SELECT linkedid FROM cdr WHERE src = ? ORDER BY AcctId DESC LIMIT 1",
                              (caller,)).fetchone()[0]
            con.close()
            call = await wait_call(services, lid, timeout=30)
            rows = await wait_cdr(settings.cdr_db_path, lid)
            assert_matches_cdr(call, rows)
            if caller == "79991110003":  # named by FastAGI from the local copy while the centre was down
                assert "Петрова Анна" in rows[0]["clid"] and call["caller_kind"] == "patient"
        await services.calls.flush(timeout=30)
        listed = [c["linkedid"] for c in await list_calls(services.db, CallFilter(limit=1000))]
        assert len(listed) == len(set(listed)) == before + 2
        assert services.calls.outbox is not None and services.calls.outbox.waiting() == []

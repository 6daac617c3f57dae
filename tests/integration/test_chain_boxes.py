"""A clinic chain: two branches, each with its own embedded Asterisk and its own clinic-pbx
process, one CRM on PostgreSQL. Calls on both boxes land once each and agree with each box's own
CDR; the second box's linkedids carry its name; each process's panel shows both boxes' calls;
a box's live card reaches the other branch's panel; a robot campaign run by both processes calls
each patient exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crm import escort, patients, schedule
from crm.call_listing import CallFilter, list_calls
from crm.clock import SettableClock
from crm.demo import load_demo
from crm.rules.escort import EscortSettings
from pbx.app import SERVICES, Services, build_app
from pbx.asterisk.embedded import EmbeddedAsterisk
from pbx.outbound.sipp import start_operator_call
from pbx.settings import GatewaySettings, RobotSettings, Settings
from tests.conftest import TEST_STATE
from tests.gateway_fake import FakeGateway
from tests.integration.helpers import (
    assert_matches_cdr,
    start_phones,
    stop_all,
    wait_call,
    wait_cdr,
)
from tests.pg_cluster import PgCluster
from web.live import LIVE_HUB, RESYNC

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
TZ = ZoneInfo("Europe/Moscow")


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
async def serve(settings: Settings, clock: SettableClock | None = None) -> AsyncIterator[web.Application]:
    app = build_app(settings, manage_asterisk=False, clock=clock, run_escort=clock is None)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    services = app[SERVICES]
    try:
        assert await services.ami.wait_connected(15)
        await asyncio.wait_for(services.calls.resynced.wait(), 15)
        if clock is not None:  # the robot's tests drive its passes themselves
            assert services.ari is not None and await services.ari.wait_connected(10)
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


CALL_DAY = datetime(2026, 11, 24, 10, 0, tzinfo=TZ).timestamp()  # the day before the visits, 10:00
ROBOT = RobotSettings(dial="Local/{number}@patient-sim", tts_rate=320, input_timeout=2.5, max_errors=2,
                      ring_seconds=8, tick_seconds=0.5)


def cdr_high_water(cdr_db: Path) -> int:
    con = sqlite3.connect(f"file:{cdr_db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COALESCE(MAX(AcctId), 0) FROM cdr").fetchone()[0]
    finally:
        con.close()


def robot_linkedids(cdr_db: Path, after: int) -> list[str]:
    """The robot's calls in a box's own CDR since ``after`` (one linkedid per call,
    ``robot-<job>-<attempt>``; a fresh database numbers its jobs from 1 again)."""
    con = sqlite3.connect(f"file:{cdr_db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute(
            "SELECT DISTINCT linkedid FROM cdr WHERE AcctId > ? AND linkedid LIKE 'robot-%'", (after,))]
    finally:
        con.close()


async def test_robot_campaign_across_two_boxes(asterisk, box_b: Settings, test_settings: Settings,
                                               pg_cluster: PgCluster, gateway: FakeGateway) -> None:
    """Both branch processes work the shared job table at once, each through its own Asterisk
    (four lines each): twelve patients who press 1 are each called exactly once, by one box."""
    url = pg_cluster.new_database()
    gw = GatewaySettings(push_url=gateway.url("push"), whatsapp_url=gateway.url("whatsapp"),
                         sms_url=gateway.url("sms"), token=gateway.token)
    settings_a = dataclasses.replace(test_settings, database=url, robot=ROBOT, gateway=gw)
    settings_b = dataclasses.replace(box_b, database=url, robot=ROBOT, gateway=gw)
    before = {s.asterisk.system_name: cdr_high_water(s.cdr_db_path) for s in (settings_a, settings_b)}
    clock = SettableClock(CALL_DAY)
    async with serve(settings_a, clock) as app_a, serve(settings_b, clock) as app_b:
        a, b = app_a[SERVICES], app_b[SERVICES]
        assert a.escort is not None and b.escort is not None
        await load_demo(a.db, now=CALL_DAY, robot_patients=False)
        numbers = [f"+799910000{i:02d}" for i in range(1, 13)]  # patient-sim: _79991XXXXXX press 1
        appts = {}
        for i, number in enumerate(numbers):
            pid = await patients.add_patient(a.db, "Сетевая", f"Пациентка{i}", phone_numbers=(number,))
            appts[number] = await schedule.book(
                a.db, patient_id=pid, doctor_id=1 + i % 2,
                starts_at=datetime(2026, 11, 25, 9 + i // 2, 30 * (i % 2), tzinfo=TZ), minutes=30,
                now=datetime(2026, 11, 20, 12, tzinfo=TZ).timestamp())
        await escort.save_settings(a.db, EscortSettings(robot_retries=1, retry_minutes=30, max_concurrent_calls=4,
                                                        caller_id="74951110001"))

        async def confirmed() -> int:
            return sum([(await schedule.get_appointment(a.db, x))["status"] == "confirmed" for x in appts.values()])

        deadline = asyncio.get_running_loop().time() + 240
        while await confirmed() < len(appts):  # both boxes' passes at the same moment, until done
            assert asyncio.get_running_loop().time() < deadline, f"{await confirmed()} of {len(appts)} confirmed"
            await asyncio.gather(a.escort.tick(), b.escort.tick())
            await asyncio.gather(a.escort.idle(), b.escort.idle())
        rows = await a.db.fetchall("SELECT appointment_id, job_id, attempt, outcome FROM robot_calls")
    # the CRM: one robot call per appointment, confirmed
    assert sorted(r["appointment_id"] for r in rows) == sorted(appts.values())
    assert {r["outcome"] for r in rows} == {"confirmed"} and {r["attempt"] for r in rows} == {1}
    # the boxes' own CDR (a row is written as its channel goes): each call placed by exactly
    # one box, both boxes took part
    expected = {f"robot-{r['job_id']}-1" for r in rows}
    for _ in range(100):
        placed = {s.asterisk.system_name: set(robot_linkedids(s.cdr_db_path, before[s.asterisk.system_name]))
                  for s in (settings_a, settings_b)}
        if placed[""] | placed["sadovaya"] >= expected:
            break
        await asyncio.sleep(0.1)
    assert placed[""].isdisjoint(placed["sadovaya"]), placed
    assert placed[""] | placed["sadovaya"] == expected, placed
    assert placed[""] and placed["sadovaya"], placed


async def test_a_branch_started_while_the_centre_is_down(asterisk, test_settings: Settings, pg_cluster: PgCluster,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The branch's process starts during an outage: it waits for the centre instead of exiting;
    a patient calling meanwhile is named on the desk phone (FastAGI from the local copy of the
    last run); once the centre answers the process starts and the call comes back from the
    box's CDR, once, as Asterisk recorded it."""
    from pbx.workers import centre_start

    monkeypatch.setattr(centre_start, "RETRY_SECONDS", 0.5)
    settings = dataclasses.replace(test_settings, database=pg_cluster.new_database())
    async with serve(settings) as app:  # the branch's last run keeps its copy of the numbers
        db = app[SERVICES].db
        await patients.add_patient(db, "Петрова", "Анна", phone_numbers=("+79991110005",))
        assert await db.refresh_copy()  # type: ignore[union-attr]
    await asyncio.to_thread(pg_cluster.stop_server)
    app = build_app(settings, manage_asterisk=False)
    server = TestServer(app, host="127.0.0.1")
    starting = asyncio.create_task(server.start_server())
    try:
        (tmp_path / "x").mkdir()
        await answered_call(app[SERVICES], "+79991110005", tmp_path, "x")
        assert not starting.done()  # still waiting for the centre, not exited
    finally:
        await asyncio.to_thread(pg_cluster.start_server)
    try:
        await asyncio.wait_for(starting, 60)
        services = app[SERVICES]
        assert await services.ami.wait_connected(15)
        await asyncio.wait_for(services.calls.resynced.wait(), 15)
        con = sqlite3.connect(f"file:{settings.cdr_db_path}?mode=ro", uri=True)
        lid = con.execute("SELECT linkedid FROM cdr WHERE src = '79991110005' ORDER BY AcctId DESC LIMIT 1").fetchone()[0]
        con.close()
        rows = await wait_cdr(settings.cdr_db_path, lid)
        assert "Петрова Анна" in rows[0]["clid"]  # named by the standby FastAGI
        call = await wait_call(services, lid, timeout=30)  # the CDR backfill brought it
        assert_matches_cdr(call, rows)
        listed = [c["linkedid"] for c in await list_calls(services.db, CallFilter(limit=1000))]
        assert listed.count(lid) == 1
    finally:
        await server.close()



async def test_after_the_centre_comes_back_an_open_tab_starts_over(asterisk, box_b: Settings, test_settings: Settings,
                                                                   pg_cluster: PgCluster, tmp_path: Path) -> None:
    """#36: box A's call rings on box B's open panel; the centre stops, the call ends meanwhile,
    the centre comes back: B's tab gets a fresh snapshot without the ended card (before, the card
    could stay «ringing» until the page was reloaded)."""
    from pbx.outbound.sipp import NEVER

    url = pg_cluster.new_database()
    async with serve(dataclasses.replace(test_settings, database=url)) as app_a, \
            serve(dataclasses.replace(box_b, database=url)) as app_b:
        a, b = app_a[SERVICES], app_b[SERVICES]
        await asyncio.wait_for(b.db.listening.wait(), 10)  # type: ignore[union-attr]
        await asyncio.wait_for(a.db.listening.wait(), 10)  # type: ignore[union-attr]
        tab = app_b[LIVE_HUB].subscribe(0, "101")  # B's panel, a tab watching phone 101
        # the queue rings its phones again after each 4 s attempt: each phone takes several
        # INVITEs (one call each would leave the next attempt's INVITE retransmitted for 32 s to
        # a dead port, into the next test's phone: pitfall 8)
        phones = await start_phones(a, tmp_path, {ext: {"ring_ms": NEVER, "calls": 5} for ext in ("101", "102", "103")})
        call = await start_operator_call(a.settings, "+79991110005", "74951110001", tmp_path, talk_ms=1000,
                                         cancel_after_ms=6000)
        for _ in range(100):  # A's ringing card reached B's hub
            if app_b[LIVE_HUB].snapshot("101")["cards"]:
                break
            await asyncio.sleep(0.1)
        [ringing] = app_b[LIVE_HUB].snapshot("101")["cards"]
        await asyncio.to_thread(pg_cluster.stop_server)
        try:
            await call.wait(20)  # the caller gives up while the centre is down
            await stop_all(*phones.values(), wait=3)
        finally:
            await asyncio.to_thread(pg_cluster.start_server)
        while (await asyncio.wait_for(tab.queue.get(), 30)) is not RESYNC:  # B listens again: its tabs start over
            pass
        # A's messages kept while the centre was down arrive in order; the card ends up gone
        # (before: A could not build the ended card without the CRM and sent its ringing one again)
        for _ in range(150):
            if ringing["linkedid"] not in {c["linkedid"] for c in app_b[LIVE_HUB].snapshot("101")["cards"]}:
                break
            await asyncio.sleep(0.1)
        assert ringing["linkedid"] not in {c["linkedid"] for c in app_b[LIVE_HUB].snapshot("101")["cards"]}
        assert ringing["linkedid"] not in {c["linkedid"] for c in app_a[LIVE_HUB].snapshot("101")["cards"]}

"""A chain's branch started while its centre (PostgreSQL) is unreachable: it neither exits nor
gives up; FastAGI names callers from the local copy its last run kept; once the centre answers
the process starts as usual (and a stop meanwhile ends the wait)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from aiohttp import web

from crm import patients
from crm.pg import PgDatabase
from pbx.app import SERVICES, Adapters, build_app
from pbx.workers import centre_start
from tests.pg_cluster import running_cluster
from tests.smtp_fake import free_port
from tests.unit.panel_client import offline_settings
from tests.unit.test_fastagi import ENV, talk

pytestmark = pytest.mark.usefixtures("pg_cluster")  # PostgreSQL is required (fails under CI)


async def named(port: int, caller: str) -> str:
    """What FastAGI sets as the caller's display name (one ``incoming`` lookup, as Asterisk)."""
    commands = await talk(port, ENV.format(script="incoming", cid=caller), ["200 result=1\n"])
    return " ".join(c for c in commands if "CALLERID(name)" in c)


async def test_a_branch_started_during_an_outage_waits_and_names_callers(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(centre_start, "RETRY_SECONDS", 0.2)
    state = tmp_path / "state"
    with running_cluster() as cluster:
        url = cluster.new_database()
        last_run = PgDatabase(url, local_copy=state / "chain-copy.sqlite")  # the branch's last run
        await last_run.open()
        await patients.add_patient(last_run, "Петрова", "Анна", phone_numbers=("+79991110003",))
        assert await last_run.refresh_copy()
        await last_run.close()

        await asyncio.to_thread(cluster.stop_server)
        port = free_port()
        settings = offline_settings(state, database=url, disk_alarm_mb=0)
        settings = dataclasses.replace(settings, asterisk=dataclasses.replace(settings.asterisk, agi_port=port))
        app = build_app(settings, adapters=Adapters(ami=lambda _s, _r: None, ari=lambda _s: None, agi=True))
        runner = web.AppRunner(app)
        setup = asyncio.create_task(runner.setup())
        try:
            for _ in range(100):  # the standby FastAGI comes up while the centre is down
                try:
                    answer = await named(port, "+79991110003")
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("no FastAGI while waiting for the centre")
            assert "Петрова Анна" in answer
            assert "CALLERID(name)" not in await named(port, "+79990000000")  # unknown: the number stays
            await asyncio.sleep(0.5)
            assert not setup.done()  # still waiting, not exited
        finally:
            await asyncio.to_thread(cluster.start_server)
        await asyncio.wait_for(setup, 30)
        try:
            db = app[SERVICES].db
            assert isinstance(db, PgDatabase) and db.centre_unreachable_since is None
            await patients.add_patient(db, "Сидоров", "Пётр", phone_numbers=("+79991110004",))
            assert "Сидоров Пётр" in await named(port, "+79991110004")  # the real FastAGI, on the centre
        finally:
            await runner.cleanup()


async def test_a_stop_while_waiting_for_the_centre_ends_the_wait(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from web.serve import serve

    monkeypatch.setattr(centre_start, "RETRY_SECONDS", 0.2)
    with running_cluster() as cluster:
        url = cluster.new_database()
        await asyncio.to_thread(cluster.stop_server)
        app = build_app(offline_settings(tmp_path / "state", database=url), adapters=Adapters.offline())
        stop = asyncio.Event()
        served = asyncio.create_task(serve(app, "127.0.0.1", free_port(), stop, max_connections=10,
                                           header_timeout=5.0))
        await asyncio.sleep(1.0)
        assert not served.done()
        stop.set()
        await asyncio.wait_for(served, 10)

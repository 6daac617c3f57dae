"""Storage faults under the server: the database locked by another process for 10 s, and the disk
of the state folder full (a real tmpfs). Finished calls are kept and retried, health, the home
page and `clinic-pbx check` raise the alarm while it lasts, nothing crashes, and every call is in
the database once it clears."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import users
from crm.calls import known_linkedids
from crm.rules.call_records import CallFinished, CallRecord, LegRecord
from pbx.app import SERVICES, Adapters, Services, build_app, health
from pbx.cli.checks import check_database, check_disk
from pbx.settings import Settings
from tests.conftest import require
from tests.unit.panel_client import log_in, offline_settings

LOCKER = (
    "import sqlite3, sys, time\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "c.execute('COMMIT')\n"
)


def record(n: int, t0: float = 1_790_000_000.0) -> CallRecord:
    lid = f"{int(t0) + n}.{n}"
    leg = LegRecord("101", lid + ".1", "answered", t0, t0 + 3, t0 + 60, False)
    return CallRecord(lid, "incoming", "incoming", "74951110001", f"7916{n:07d}", "74951110001",
                      "reception", (leg,), "101", t0, t0 + 3, t0 + 60, 3.0, 57.0, "caller",
                      "x" * 300)


async def wait_for(pred, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.05)


@pytest.fixture
async def panel(settings: Settings) -> AsyncIterator[tuple[TestClient, Services]]:
    app = build_app(settings, adapters=Adapters.offline())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        services = app[SERVICES]
        await users.create_user(services.db, "anna", "pw", role="director", history_access="read")
        await log_in(client, "anna", "pw")
        yield client, services


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return offline_settings(tmp_path / "state", disk_alarm_mb=0)


async def stored(services: Services, records: list[CallRecord]) -> int:
    return len(await known_linkedids(services.db, [r.linkedid for r in records]))


async def test_database_locked_for_10_s(panel, settings: Settings) -> None:
    client, services = panel
    assert services.calls is not None
    locker = await asyncio.create_subprocess_exec(sys.executable, "-c", LOCKER, str(settings.db_path), "10",
                                                  stdout=asyncio.subprocess.PIPE)
    try:
        assert locker.stdout is not None and (await locker.stdout.readline()).strip() == b"locked"
        records = [record(n) for n in range(20)]
        for r in records:
            services.calls._apply([CallFinished(r)])
        await wait_for(lambda: services.calls.write_failing_since is not None, 9, "no alarm")
        status = await health(services)
        assert status["db_writes"] is False and status["calls_pending"] >= 19
        assert "locked" in str(status["db_error"])
        api = await client.get("/api/v1/health")
        assert api.status == 503 and (await api.json())["db_writes"] is False
        page = await (await client.get("/")).text()
        assert "звонки не записываются в базу" in page and "ждут записи" in page
        ok, detail = await check_database(settings, timeout=0.5)
        assert not ok and "locked" in detail
    finally:
        await asyncio.wait_for(locker.wait(), 20)
    await services.calls.flush(timeout=20)
    assert await stored(services, records) == 20
    assert services.calls.write_failing_since is None
    assert (await health(services))["db_writes"] is True
    assert "звонки не записываются" not in await (await client.get("/")).text()
    assert (await check_database(settings, timeout=1))[0]


async def test_reports_and_the_contact_history_answer_while_the_database_is_locked(panel, settings: Settings) -> None:
    """Their stored days are a cache: with another process holding the database they are neither
    refreshed nor stored (at once, without waiting the busy timeout with the one writer), and the
    pages still answer from what the database holds."""
    client, services = panel
    for r in [record(n) for n in range(3)]:
        services.calls._apply([CallFinished(r)])
    await services.calls.flush(timeout=10)
    locker = await asyncio.create_subprocess_exec(sys.executable, "-c", LOCKER, str(settings.db_path), "4",
                                                  stdout=asyncio.subprocess.PIPE)
    try:
        assert locker.stdout is not None and (await locker.stdout.readline()).strip() == b"locked"
        t0 = asyncio.get_running_loop().time()
        assert (await client.get("/reports?report=days&since=2026-09-01&until=2026-09-30")).status == 200
        assert (await client.get("/appeals?since=2026-09-01&until=2026-09-03")).status == 200
        assert asyncio.get_running_loop().time() - t0 < 3  # no busy timeout waited per day
    finally:
        await asyncio.wait_for(locker.wait(), 20)
    assert (await client.get("/appeals?since=2026-09-01&until=2026-09-03")).status == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    require("root (to mount a tmpfs)", os.geteuid() == 0, "run the tests as root")
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system until it refuses another byte."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


async def test_disk_full(small_disk: Path, tmp_path: Path) -> None:
    settings = offline_settings(small_disk / "state", disk_alarm_mb=1)
    app = build_app(settings, adapters=Adapters.offline())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        services = app[SERVICES]
        assert services.calls is not None
        await users.create_user(services.db, "anna", "pw", role="director", history_access="read")
        await log_in(client, "anna", "pw")
        filler = fill(small_disk)
        assert not check_disk(settings)[0]
        records = [record(n) for n in range(600)]
        for r in records:
            services.calls._apply([CallFinished(r)])
        await wait_for(lambda: services.calls.write_failing_since is not None, 20, "no alarm")
        status = await health(services)
        assert status["db_writes"] is False and status["disk"] is False
        assert "full" in str(status["db_error"])
        page = await (await client.get("/")).text()
        assert "звонки не записываются в базу" in page and "На диске осталось 0 МБ" in page
        filler.unlink()
        await services.calls.flush(timeout=30)
        assert await stored(services, records) == 600
        status = await health(services)
        assert status["db_writes"] is True and status["disk"] is True
        assert "звонки не записываются" not in await (await client.get("/")).text()


async def test_a_refused_commit_leaves_the_writer_usable(tmp_path: Path) -> None:
    """A COMMIT that fails leaves SQLite's transaction open; without a ROLLBACK every later
    write on the one writer connection would fail ("cannot start a transaction within a
    transaction"). A deferred foreign key makes COMMIT itself refuse."""
    from crm.db import Database

    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            await tx.execute("CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO child (p) VALUES (42)")
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO parent (id) VALUES (1)")
        assert [tuple(r) for r in await db.fetchall("SELECT id FROM parent")] == [(1,)]
        assert await db.fetchall("SELECT p FROM child") == []
    finally:
        await db.close()


async def test_a_task_cancelled_during_its_commit(tmp_path: Path) -> None:
    """A stopping server cancels a loop in the middle of a COMMIT: aiosqlite runs it anyway, so
    the transaction waits for it (a ROLLBACK behind it would fail and break the shutdown); the
    row is committed, the task ends cancelled, the database goes on."""
    import asyncio

    from crm.db import Database

    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        async def write() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO clinic_settings (key, value) VALUES ('k', '1')")
                me = asyncio.current_task()
                assert me is not None
                asyncio.get_running_loop().call_soon(me.cancel)  # lands on the COMMIT's await

        task = asyncio.get_running_loop().create_task(write())
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await db.fetchone("SELECT value FROM clinic_settings WHERE key = 'k'"))[0] == "1"
        async with db.transaction() as tx:  # the one writer is still usable
            await tx.execute("UPDATE clinic_settings SET value = '2' WHERE key = 'k'")
        assert (await db.fetchone("SELECT value FROM clinic_settings WHERE key = 'k'"))[0] == "2"
    finally:
        await db.close()

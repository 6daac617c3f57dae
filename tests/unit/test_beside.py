"""crm.beside: the background pass's computations in a process of its own (#31)."""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path

import pytest

from crm import beside
from crm.db import Database, Reader

SLOW = functools.partial(Reader.fetch_tuples, sql="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1"
                         " FROM n WHERE i < 1000000000) SELECT COUNT(*) FROM n")  # minutes
COUNT = functools.partial(Reader.fetch_tuples, sql="SELECT COUNT(*) FROM users")



async def test_the_child_reads_what_the_writer_committed_and_can_write_nothing(db: Database) -> None:
    async with beside.apart(db) as child:
        assert isinstance(child, beside.Beside)
        assert await child.read(COUNT) == [(0,)]
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO users (login, password_hash, full_name, role, created_at)"
                             " VALUES ('a', 'x', 'A', 'admin', '2026-01-01')")
        assert await child.read(COUNT) == [(1,)]  # the same child, a later snapshot
        with pytest.raises(beside.ChildFailed, match="readonly"):
            await child.read(functools.partial(Reader.fetch_tuples, sql="DELETE FROM users"))
        with pytest.raises(beside.ChildFailed, match="syntax error"):  # its traceback comes back
            await child.read(functools.partial(Reader.fetch_tuples, sql="SELEC 1"))
        assert await child.read(COUNT) == [(1,)]  # still serving after an error
    assert (await db.fetchone("SELECT COUNT(*) FROM users"))[0] == 1


def die(_: Reader) -> None:
    os._exit(3)  # the child, mid-question (a crash, an OOM kill)


async def test_a_child_that_dies_mid_question_is_reported_and_replaced_and_none_outlives_the_pass(
        db: Database) -> None:
    async with beside.apart(db) as child:
        assert await child.read(COUNT) == [(0,)]
        first = child._proc
        assert first is not None
        with pytest.raises(beside.ChildFailed, match="ended"):
            await child.read(die)
        assert await child.read(COUNT) == [(0,)]  # a new child
        second = child._proc
        assert second is not None and second.pid != first.pid
    assert second.returncode is not None  # gone with the pass


async def test_a_pass_stopped_mid_question_kills_its_child(db: Database) -> None:
    asked = asyncio.Event()
    started: list[asyncio.subprocess.Process] = []

    async def one_pass() -> None:
        async with beside.apart(db) as child:
            await child.read(COUNT)
            assert child._proc is not None
            started.append(child._proc)
            ask = asyncio.ensure_future(child.read(SLOW))
            await asyncio.sleep(0)  # the question written; the ask now waits for its answer
            asked.set()
            await ask

    task = asyncio.ensure_future(one_pass())
    await asyncio.wait_for(asked.wait(), 30)
    t0 = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert started[0].returncode is not None  # killed, not left computing for minutes
    assert asyncio.get_running_loop().time() - t0 < beside.CLOSE_WAIT  # at once, not after the wait


@pytest.mark.parametrize("python", ["/nonexistent/python3", "/bin/false"])
async def test_a_pass_whose_child_cannot_start_is_computed_in_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, python: str) -> None:
    """No interpreter there, or one that ends at once: the refresher's pass still stores the days."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from crm import call_stats, calls
    from crm.clock import SettableClock
    from crm.rules.call_records import CallRecord
    from pbx.workers.report_refresher import ReportRefresher

    tz = ZoneInfo("Europe/Moscow")
    t0 = datetime(2026, 11, 10, 12, tzinfo=tz).timestamp()
    db = Database(tmp_path / "crm.sqlite", SettableClock(t0 + 3600))
    await db.open()
    try:
        await calls.save_call(db, CallRecord("x.1", "incoming", "missed", "74951110001", "79990001122", "74951110001",
                                             "reception", (), "", t0, None, t0 + 20, 20.0, 0.0, "caller", ""))
        monkeypatch.setattr(beside, "PYTHON", python)
        refresher = ReportRefresher(db, tz)
        await refresher.run_pass()
        assert refresher.computed["report_days"] >= 1 and refresher.computed["passes"] == 1
        assert "computed here this time" in caplog.text
        assert await call_stats.refresh(db, tz) == 0  # stored by the pass: nothing left
    finally:
        await db.close()


async def test_a_question_given_up_does_not_answer_the_next_one(db: Database) -> None:
    async with beside.apart(db) as child:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(child.read(SLOW), 0.5)
        # the child is still computing the first: a new one answers this
        assert await asyncio.wait_for(child.read(COUNT), 30) == [(0,)]

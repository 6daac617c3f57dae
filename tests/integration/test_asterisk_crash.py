"""#31: Asterisk itself killed (kill -9) with a call talking. Asterisk writes no CDR row for it,
so before, the call was recorded nowhere. Now the server starts Asterisk again within seconds
(its supervisor), resyncs, and keeps the call as the tracker saw it until the link went: one
record, answered by 101, talk until the crash, hung up by the system, marked."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from crm.call_listing import CallFilter, list_calls
from pbx.outbound.sipp import start_operator_call
from pbx.workers.asterisk_supervisor import AsteriskSupervisor
from tests.integration.helpers import (
    assert_matches_cdr,
    cdr_rows,
    start_phones,
    stop_all,
    wait_call,
    wait_cdr,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]


async def talking_call(services, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A patient's call that 101 answers and that talks for a minute unless cut."""
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 500}})
    call = await start_operator_call(services.settings, "+79161234567", "74951110001", tmp_path, talk_ms=60000)
    return phones, call


async def test_a_call_talking_when_asterisk_is_killed_is_kept_and_asterisk_comes_back(
        server, asterisk, tmp_path: Path) -> None:
    services, log = server
    supervisor = AsteriskSupervisor(asterisk, check=0.3)
    supervisor.start()
    phones, call = await talking_call(services, tmp_path)
    try:
        answered = await log.wait_for(lambda e: e.name == "BridgeEnter" and e.headers["Channel"].startswith("PJSIP/101-"))
        linkedid = answered.headers["Linkedid"]
        await asyncio.sleep(2.0)
        pid = asterisk.pid()
        assert pid is not None
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        # started again by the supervisor, the links back, the call tracking resynced
        deadline = asyncio.get_running_loop().time() + 30
        while not (supervisor.restarts and services.ami.connected and services.calls.resynced.is_set()
                   and asterisk.pid() not in (None, pid)):
            assert asyncio.get_running_loop().time() < deadline, "Asterisk not back"
            await asyncio.sleep(0.2)
        assert "сигнал" in supervisor.last_reason  # why it is gone: killed by signal 9
        record = await wait_call(services, linkedid, timeout=30)
    finally:
        call.kill()
        await stop_all(call, *phones.values(), wait=1)
        await supervisor.stop()
    assert record["source"] == "link_lost" and record["hangup_by"] == "system"
    assert record["answered_by_ext"] == "101" and record["call_type"] == "incoming"
    assert abs(record["talk_seconds"] - (killed_at - answered.received_at)) < 1.5, record["talk_seconds"]
    assert cdr_rows(services.settings.cdr_db_path, linkedid) == []  # Asterisk never wrote it
    listed = [c for c in await list_calls(services.db, CallFilter(limit=100)) if c["linkedid"] == linkedid]
    assert len(listed) == 1


async def test_an_orderly_stop_of_asterisk_ends_the_call_as_the_system(server, asterisk, tmp_path: Path) -> None:
    """#31: ``core stop now`` with a call talking: Asterisk ended it, not the patient or the
    administrator (before, the first Hangup named the callee). Its CDR row is written."""
    services, log = server
    phones, call = await talking_call(services, tmp_path)
    try:
        answered = await log.wait_for(lambda e: e.name == "BridgeEnter" and e.headers["Channel"].startswith("PJSIP/101-"))
        linkedid = answered.headers["Linkedid"]
        await asyncio.sleep(1.5)
        await asyncio.to_thread(asterisk.stop)  # `core stop now`
        record = await wait_call(services, linkedid, timeout=15)
    finally:
        call.kill()
        await stop_all(call, *phones.values(), wait=1)
        await asyncio.to_thread(asterisk.start)
    assert record["hangup_by"] == "system" and record["source"] == "ami"
    assert record["answered_by_ext"] == "101"
    assert_matches_cdr(record, await wait_cdr(services.settings.cdr_db_path, linkedid, answered=True))


async def test_asterisk_killed_three_times_is_back_each_time_and_records_the_next_call(
        server, asterisk, tmp_path: Path) -> None:
    """#31: the supervisor at its production pace (a look every 2 s, a crash loop backing off)
    brings a thrice-killed Asterisk back within 10 s each time, the links resynced; the call
    made afterwards is recorded as its CDR says."""
    services, log = server
    supervisor = AsteriskSupervisor(asterisk)
    supervisor.start()
    loop = asyncio.get_running_loop()
    try:
        for kill in range(1, 4):
            pid = asterisk.pid()
            assert pid is not None
            killed_at = loop.time()
            os.kill(pid, signal.SIGKILL)
            while not (supervisor.restarts and len(supervisor.restarts) >= kill and services.ami.connected
                       and services.calls.resynced.is_set() and asterisk.pid() not in (None, pid)
                       and await asyncio.to_thread(asterisk.healthy)):
                assert loop.time() - killed_at < 10, f"Asterisk not back within 10 s after kill {kill}"
                await asyncio.sleep(0.1)
        assert len(supervisor.restarts) == 3
        phones = await start_phones(services, tmp_path, {"102": {"ring_ms": 500}})
        call = await start_operator_call(services.settings, "+79161234567", "74951110001", tmp_path, talk_ms=2000)
        try:
            answered = await log.wait_for(
                lambda e: e.name == "BridgeEnter" and e.headers["Channel"].startswith("PJSIP/102-"), timeout=30)
            await stop_all(call, wait=15)
            record = await wait_call(services, answered.headers["Linkedid"], timeout=15)
        finally:
            call.kill()
            await stop_all(*phones.values(), wait=1)
    finally:
        await supervisor.stop()
    assert record["answered_by_ext"] == "102" and record["source"] == "ami"
    assert_matches_cdr(record, await wait_cdr(services.settings.cdr_db_path, record["linkedid"], answered=True))

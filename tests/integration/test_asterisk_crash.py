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
from tests.integration.helpers import cdr_rows, start_phones, stop_all, wait_call

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]


async def test_a_call_talking_when_asterisk_is_killed_is_kept_and_asterisk_comes_back(
        server, asterisk, tmp_path: Path) -> None:
    services, log = server
    supervisor = AsteriskSupervisor(asterisk, check=0.3)
    supervisor.start()
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 500}})
    call = await start_operator_call(services.settings, "+79161234567", "74951110001", tmp_path, talk_ms=60000)
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

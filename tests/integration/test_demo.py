"""The demo a newcomer runs: `clinic-pbx demo-call` carries sound both ways (the recording is
not an empty WAV), reports what Asterisk's CDR saw (not its own parameters) and leaves no
temp folder; `clinic-pbx demo-phones` answers click-to-call, so the panel's button works."""

from __future__ import annotations

import asyncio
import re
import tempfile
import wave
from pathlib import Path

import pytest

from crm.call_listing import CallFilter, list_calls
from pbx.cli.demo import DemoCall, run_demo_phones
from pbx.outbound.originate import OriginateRequest, originate
from tests.integration.helpers import wait_call

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
LINEAR = "74951110002"


def demo_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("clinic-pbx-demo-*")}


async def test_demo_call_has_sound_and_reports_the_cdr(server) -> None:
    services, _ = server
    before = demo_dirs()
    result = await DemoCall(services.settings).run("+79161230001", LINEAR, "102", 800, 3000)
    assert result.ok, result.summary()
    # the linear queue rings 101 first for ring_seconds: the caller waited that long, not 0.8 s
    waited = re.search(r"desk phone 102 answered after ([0-9.]+) s", result.summary())
    assert waited, result.summary()
    assert float(waited.group(1)) >= services.settings.asterisk.ring_seconds
    assert demo_dirs() == before
    rows = []
    for _ in range(50):
        await services.calls.flush()
        rows = [c for c in await list_calls(services.db, CallFilter(limit=20))
                if c["phone_e164"] == "+79161230001"]
        if rows:
            break
        await asyncio.sleep(0.2)
    assert rows and rows[0]["recording"], rows
    path = services.settings.recordings_dir / rows[0]["recording"]
    for _ in range(50):  # MixMonitor closes the file a moment after the hang-up
        if path.exists() and path.stat().st_size > 44:
            break
        await asyncio.sleep(0.1)
    with wave.open(str(path)) as w:
        seconds = w.getnframes() / w.getframerate()
        frames = w.readframes(w.getnframes())
    assert seconds >= 2.0, seconds
    assert len(set(frames)) > 16  # speech, not a block of silence


async def test_demo_phones_answer_click_to_call(server, tmp_path: Path) -> None:
    services, _ = server
    stop = asyncio.Event()
    phones = asyncio.create_task(run_demo_phones(services.settings, tmp_path, stop, ring_ms=400, talk_ms=1500))
    try:
        await asyncio.sleep(0.5)
        assert not phones.done(), phones.result()
        assert services.ami is not None
        linkedid = await originate(services.ami, OriginateRequest("101", "79031112255"))
        record = await wait_call(services, linkedid, timeout=20)
        assert record["call_type"] == "outgoing" and record["answered_by_ext"] == "101"
        assert record["talk_seconds"] >= 1.0
    finally:
        stop.set()
        assert await asyncio.wait_for(phones, 10) == []

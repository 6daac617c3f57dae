"""A real call: SIPp as the operator calls the clinic's DID, the FastAGI lookup names the
patient, the ringall queue rings three SIPp desk phones, 101 answers; checked against AMI,
SIP traces, Asterisk's CDR and the recording."""

from __future__ import annotations

import asyncio
import os
import shutil
import wave
from pathlib import Path

import pytest

from crm import patients
from pbx.ami.client import AmiClient, AmiEvent
from pbx.ami.framing import AmiFramer
from pbx.ami.recording import RawRecorder, read_recording
from pbx.outbound.sipp import start_desk_phone, start_operator_call
from tests.integration.helpers import wait_cdr

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
NAME = "Петрова Анна Сергеевна"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "ami"


def check_recording_replays(path: Path, tap: AmiClient) -> None:
    """The raw recording, replayed through the framer, yields exactly the events the live
    client queued, in the same order."""
    live = []
    while not tap.queue.empty():
        item = tap.queue.get_nowait()
        if isinstance(item, AmiEvent):
            live.append(item.headers)
    framer = AmiFramer()
    replayed = [m.headers for _, chunk in read_recording(path) for m in framer.feed(chunk) if m.event]
    assert len(live) > 50
    assert replayed == live


def rms(path: Path) -> float:
    import array
    import math

    with wave.open(str(path)) as w:
        samples = array.array("h", w.readframes(w.getnframes()))
    return math.sqrt(sum(x * x for x in samples) / max(1, len(samples))) / 32768


async def test_ringall_call_answered_by_101(server, tmp_path: Path, caller_voice: Path) -> None:
    services, log = server
    settings = services.settings
    await patients.add_patient(services.db, "Петрова", "Анна", "Сергеевна", phone_numbers=("+79161234567",))
    phones = {
        "101": await start_desk_phone(settings, "101", tmp_path, ring_ms=1500),
        "102": await start_desk_phone(settings, "102", tmp_path, ring_ms=600_000),
        "103": await start_desk_phone(settings, "103", tmp_path, ring_ms=600_000),
    }
    a = settings.asterisk
    recorder = RawRecorder(tmp_path / "call.amiraw")
    tap = AmiClient(a.host, a.ami_port, a.ami_user, a.ami_secret, raw_sink=recorder)
    assert await tap.start(wait=5)
    await asyncio.sleep(0.3)
    call = await start_operator_call(
        settings, "+79161234567", "74951110001", tmp_path, talk_ms=3000, audio=caller_voice
    )
    assert await call.wait(40) == 0, call.errors
    rcs = {ext: await p.wait(10) for ext, p in phones.items()}
    assert rcs == {"101": 0, "102": 0, "103": 0}, {e: p.errors for e, p in phones.items()}

    join = await log.wait_for(lambda e: e.name == "QueueCallerJoin")
    linkedid = join.headers["Linkedid"]
    assert join.headers["Queue"] == "reception-ringall"
    # the FastAGI lookup ran on this call and its Cyrillic name went through AMI intact
    agi = await log.wait_for(lambda e: e.name == "AGIExecEnd" and e.headers.get("Linkedid") == linkedid)
    assert agi.headers["Command"].startswith("EXEC MSet")
    assert join.headers["CallerIDName"] == NAME
    called = [e for e in log.events if e.name == "AgentCalled" and e.headers["Linkedid"] == linkedid]
    assert sorted(e.headers["MemberName"] for e in called) == ["101", "102", "103"]
    connect = await log.wait_for(lambda e: e.name == "AgentConnect" and e.headers["Linkedid"] == linkedid)
    assert connect.headers["MemberName"] == "101"
    await log.wait_for(lambda e: e.name == "Hangup" and e.headers["Uniqueid"] == linkedid)
    await asyncio.sleep(1.0)  # the last Cdr/CEL events
    await tap.stop()
    recorder.close()
    check_recording_replays(recorder.path, tap)
    if os.environ.get("CLINIC_PBX_RECORD_FIXTURES"):
        shutil.copyfile(recorder.path, FIXTURES / "queue_ringall_answered.amiraw")
    # the desk phone's display got the patient's name
    assert NAME in phones["101"].messages
    assert services.agi is not None and services.agi.stats["requests"] >= 1
    from pbx.app import health  # what /api/v1/health and the home page show
    status = await health(services)
    assert status["agi_requests"] >= 1 and status["ari"] and status["counted_since"]

    # Asterisk's own CDR agrees: 101 answered, the others did not, about 3 s billed
    await asyncio.sleep(0.5)
    rows = await wait_cdr(settings.cdr_db_path, linkedid, count=3)
    by_phone = {r["dstchannel"].split("-")[0]: r for r in rows if r["dstchannel"]}
    assert by_phone["PJSIP/101"]["disposition"] == "ANSWERED"
    assert abs(int(by_phone["PJSIP/101"]["billsec"]) - 3) <= 1
    assert by_phone["PJSIP/102"]["disposition"] == "NO ANSWER"

    # the call was recorded while bridged
    recording = settings.recordings_dir / f"{linkedid}.wav"
    with wave.open(str(recording)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert 2.0 <= seconds <= 4.5
    assert rms(recording) > 0.01  # real audio, not silence

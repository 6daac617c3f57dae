"""#37: the keys a reception presses on its desk phone, as a real phone sends them, through the
real Asterisk, each call compared with Asterisk's CDR.

The transfer key is a SIP REFER in the answered call (Yealink, Grandstream): before, Asterisk
never loaded res_pjsip_refer and answered nothing, so the patient stayed with 101. A transfer
nobody takes brings the patient back to the administrator who transferred, never cuts them off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from crm import patients
from pbx.outbound.sipp import (
    NEVER,
    free_udp_ports,
    start_desk_phone,
    start_operator_call,
    start_phone_call,
)
from tests.integration.helpers import billsec_agrees, keep_fixture, stop_all, wait_call, wait_cdr
from tests.integration.test_transfers import agrees_with_backfill, talk_in_cdr

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
LINEAR = "74951110002"  # 101 rings first
ANNA = "+79161234567"


async def phones(services: Any, tmp_path: Path, **spec: dict[str, Any]) -> list[Any]:
    out = []
    for ext in ("101", "102", "103"):
        out.append(await start_desk_phone(services.settings, ext, tmp_path, **spec.get(f"p{ext}", {"ring_ms": NEVER})))
    return out


async def linkedid_of(log: Any) -> str:
    entered = await log.wait_for(lambda e: e.name == "BridgeEnter" and e.headers["Channel"].startswith("PJSIP/101-"))
    return entered.headers["Linkedid"]


async def test_the_transfer_key_passes_the_patient_to_a_colleague(server, tmp_path: Path) -> None:
    services, log = server
    await patients.add_patient(services.db, "Петрова", "Анна", "Сергеевна", phone_numbers=(ANNA,))
    procs = await phones(services, tmp_path, p101={"ring_ms": 800, "refer_to": "102", "refer_after_ms": 1500},
                         p102={"ring_ms": 1200})
    call = await start_operator_call(services.settings, ANNA, LINEAR, tmp_path, talk_ms=9000)
    linkedid = await linkedid_of(log)
    assert await call.wait(60) == 0, call.errors
    await stop_all(*procs, wait=3)  # the call is over: a phone still up never got an INVITE
    r = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=2)
    keep_fixture(tmp_path, "refer_blind")
    assert r["direction"] == "incoming" and r["call_type"] == "incoming" and r["did"] == LINEAR
    assert r["answered_by_ext"] == "101" and r["caller_kind"] == "patient"
    assert [(leg["extension"], leg["outcome"]) for leg in r["legs"]] == [("101", "answered"), ("102", "answered")]
    assert r["missed_by"] == [] and r["hangup_by"] == "caller"
    assert any(row["dstchannel"].startswith("PJSIP/102-") and row["disposition"] == "ANSWERED" for row in rows), rows
    assert billsec_agrees(talk_in_cdr(rows, rows[0]["channel"]), r["talk_seconds"]), (r["talk_seconds"], rows)
    assert r["talk_seconds"] > 6
    agrees_with_backfill(services, r, rows)


async def test_a_transfer_nobody_takes_brings_the_patient_back(server, tmp_path: Path) -> None:
    """102 never answers: after TRANSFER_RING (8 s here) the patient rings 101 again, who
    answers, and they talk until the patient hangs up; before, the patient was cut off."""
    services, log = server
    procs = await phones(services, tmp_path, p101={"ring_ms": 800, "refer_to": "102", "refer_after_ms": 1000,
                                                   "calls": 2})
    call = await start_operator_call(services.settings, ANNA, LINEAR, tmp_path, talk_ms=16000)
    linkedid = await linkedid_of(log)
    assert await call.wait(60) == 0, call.errors
    await stop_all(*procs, wait=3)  # the call is over: a phone still up never got an INVITE
    r = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=3)
    keep_fixture(tmp_path, "refer_nobody_answers")
    assert r["direction"] == "incoming" and r["answered_by_ext"] == "101"
    assert [(leg["extension"], leg["outcome"]) for leg in r["legs"]] == [
        ("101", "answered"), ("102", "no_answer"), ("101", "answered")]
    assert r["hangup_by"] == "caller"  # the patient ended it, talking to 101 again
    back = [row for row in rows if row["dstchannel"].startswith("PJSIP/101-") and row["disposition"] == "ANSWERED"]
    assert len(back) == 2, rows  # answered twice: the queue call and the return
    assert billsec_agrees(talk_in_cdr(rows, rows[0]["channel"]), r["talk_seconds"]), (r["talk_seconds"], rows)


async def test_the_pickup_key_answers_a_colleague_s_ringing_call(server, tmp_path: Path) -> None:
    """101 and 102 ring and nobody takes the patient; 103's administrator presses the pickup key
    (dials *8, as a phone's pickup key does): the call is answered by 103, nobody missed it."""
    services, log = server
    procs = await phones(services, tmp_path)  # every desk phone rings, none answers
    call = await start_operator_call(services.settings, ANNA, "74951110001", tmp_path, talk_ms=9000)
    ringing = await log.wait_for(lambda e: e.name == "DialBegin" and e.headers.get("DestChannel", "").startswith("PJSIP/101-"))
    linkedid = ringing.headers["Linkedid"]
    password = services.settings.asterisk.phone_password + "103"
    picker = await start_phone_call(services.settings, "103", password, "*8", tmp_path, free_udp_ports(1, step=1),
                                    talk_ms=30000)  # the patient hangs up first
    assert await picker.wait(40) == 0, picker.errors
    assert await call.wait(60) == 0, call.errors
    await stop_all(*procs, wait=3)  # the call is over: a phone still up never got an INVITE
    r = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=2, answered=True)
    keep_fixture(tmp_path, "pickup")
    assert r["direction"] == "incoming" and r["call_type"] == "incoming" and r["answered_by_ext"] == "103"
    assert r["missed_by"] == [] and r["hangup_by"] == "caller"
    assert billsec_agrees(talk_in_cdr(rows, rows[0]["channel"]), r["talk_seconds"]), (r["talk_seconds"], rows)
    assert r["talk_seconds"] > 4


async def test_the_hold_key_plays_music_to_the_patient_and_the_talk_goes_on(server, tmp_path: Path) -> None:
    services, log = server
    procs = await phones(services, tmp_path, p101={"ring_ms": 500, "hold_after_ms": 1000, "hold_ms": 2500})
    call = await start_operator_call(services.settings, ANNA, LINEAR, tmp_path, talk_ms=7000)
    linkedid = await linkedid_of(log)
    held = await log.wait_for(lambda e: e.name == "Hold" and e.headers["Channel"].startswith("PJSIP/101-"))
    music = await log.wait_for(lambda e: e.name == "MusicOnHoldStart" and e.headers["Linkedid"] == linkedid)
    assert music.headers["Channel"].startswith("PJSIP/operator-") and music.headers.get("Class") == "default"
    await log.wait_for(lambda e: e.name == "Unhold" and e.headers["Channel"] == held.headers["Channel"])
    await log.wait_for(lambda e: e.name == "MusicOnHoldStop" and e.headers["Linkedid"] == linkedid)
    assert await call.wait(40) == 0, call.errors
    await stop_all(*procs, wait=3)  # the call is over: a phone still up never got an INVITE
    r = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid)
    # the hold is part of the talk (as the CDR's billsec has it): one leg, answered by 101
    assert r["answered_by_ext"] == "101" and [leg["extension"] for leg in r["legs"]] == ["101"]
    assert r["hangup_by"] == "caller" and r["talk_seconds"] > 6
    assert billsec_agrees(talk_in_cdr(rows, rows[0]["channel"]), r["talk_seconds"]), (r["talk_seconds"], rows)


async def test_do_not_disturb_from_the_phone_takes_it_out_of_the_queue(server, asterisk, tmp_path: Path) -> None:
    try:
        await _do_not_disturb(server, asterisk, tmp_path)
    finally:  # never left on for the next test
        asterisk.rx("database del clinic-dnd 102")
        asterisk.rx("queue unpause member PJSIP/102")


async def _do_not_disturb(server: Any, asterisk: Any, tmp_path: Path) -> None:
    services, log = server
    password = services.settings.asterisk.phone_password + "102"
    # 102 presses *78: its queues pass it over, colleagues dialling it hear busy
    dnd = await start_phone_call(services.settings, "102", password, "*78", tmp_path, free_udp_ports(1, step=1),
                                 talk_ms=300)
    await dnd.wait(20)
    await log.wait_for(lambda e: e.name == "QueueMemberPause" and e.headers.get("Interface") == "PJSIP/102"
                       and e.headers.get("Paused") == "1")
    assert "1" in asterisk.rx("database get clinic-dnd 102")
    assert services.telephony is not None
    await services.telephony.refresh()
    assert services.telephony.dnd == {"102"}
    procs = await phones(services, tmp_path, p101={"ring_ms": 3000}, p102={"ring_ms": 500})
    call = await start_operator_call(services.settings, ANNA, "74951110001", tmp_path, talk_ms=1500)  # all at once
    linkedid = await linkedid_of(log)
    assert await call.wait(40) == 0, call.errors
    await stop_all(*procs, wait=3)  # the call is over: a phone still up never got an INVITE
    r = await wait_call(services, linkedid)
    assert r["answered_by_ext"] == "101" and "102" not in [leg["extension"] for leg in r["legs"]], r["legs"]
    # *79: back in the queues
    back = await start_phone_call(services.settings, "102", password, "*79", tmp_path, free_udp_ports(1, step=1),
                                  talk_ms=300)
    await back.wait(20)
    await log.wait_for(lambda e: e.name == "QueueMemberPause" and e.headers.get("Interface") == "PJSIP/102"
                       and e.headers.get("Paused") == "0")
    assert "not found" in asterisk.rx("database get clinic-dnd 102").lower()


async def test_an_attended_transfer_after_a_consultation(server, tmp_path: Path) -> None:
    """101 answers the patient, calls 102 on its second line («Пациент Петрова, возьмёте?»), then
    presses «transfer»: a REFER with Replaces. The patient talks with 102; one incoming call,
    answered by 101, legs 101 then 102, its talk as the CDR's."""
    from pbx.asterisk.config import phone_port
    from tests.sip_phone import PythonPhone

    services, log = server
    a = services.settings.asterisk
    await patients.add_patient(services.db, "Петрова", "Анна", "Сергеевна", phone_numbers=(ANNA,))
    phone = PythonPhone("101", a.phone_password + "101", phone_port(services.settings, "101"), (a.host, a.sip_port))
    await phone.start()
    others = [await start_desk_phone(services.settings, "102", tmp_path, ring_ms=500),
              await start_desk_phone(services.settings, "103", tmp_path, ring_ms=NEVER)]
    try:
        call = await start_operator_call(services.settings, ANNA, LINEAR, tmp_path, talk_ms=9000)
        first = await phone.answer()
        linkedid = await linkedid_of(log)
        await asyncio.sleep(1.0)
        consult = await phone.call("102")  # 102 answers
        await asyncio.sleep(1.0)
        assert await phone.attended_transfer(first, consult, "102") == "SIP/2.0 202 Accepted"
        await log.wait_for(lambda e: e.name == "AttendedTransfer" and e.headers.get("Result") == "Success")
        assert await call.wait(40) == 0, call.errors
        await stop_all(*others, wait=3)
        for dialog in (first, consult):  # nothing of 101's left to reach the next test's phone 101
            await phone.hang_up(dialog)
        await asyncio.sleep(0.5)
    finally:
        phone.close()
    assert phone.byes >= 1  # Asterisk let 101 go once the patient and 102 were joined
    r = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=2)
    keep_fixture(tmp_path, "refer_attended")
    assert r["direction"] == "incoming" and r["call_type"] == "incoming" and r["did"] == LINEAR
    assert r["answered_by_ext"] == "101" and r["caller_kind"] == "patient"
    assert [(leg["extension"], leg["outcome"]) for leg in r["legs"]] == [("101", "answered"), ("102", "answered")], r["legs"]
    assert r["missed_by"] == [] and r["hangup_by"] == "caller"
    assert billsec_agrees(talk_in_cdr(rows, rows[0]["channel"]), r["talk_seconds"]), (r["talk_seconds"], rows)
    agrees_with_backfill(services, r, rows)

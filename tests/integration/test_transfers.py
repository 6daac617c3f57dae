"""Transfers on the real Asterisk: the administrator who answered passes the patient to a
colleague's desk phone (AMI BlindTransfer, what a phone's transfer key asks of Asterisk). The
CRM keeps one call of the first direction, answered by whoever picked it up, talking until the
patient or the last colleague hangs up, and agrees with Asterisk's CDR rows of the linkedid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crm import patients
from pbx.calls.cdr import record_from_cdr
from pbx.outbound.originate import OriginateRequest, originate
from pbx.outbound.sipp import NEVER, start_operator_call, start_operator_uas
from tests.integration.helpers import (
    billsec_agrees,
    keep_fixture,
    start_phones,
    stop_all,
    wait_call,
    wait_cdr,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
LINEAR = "74951110002"  # 101 first: the colleague's phone has not rung before the transfer
ANNA = "+79161234567"


async def transfer(services: Any, log: Any, desk_channel_prefix: str, to: str) -> str:
    """Once ``desk_channel_prefix`` talks, transfer its far party to ``to``; the linkedid."""
    entered = await log.wait_for(lambda e: e.name == "BridgeEnter"
                                 and e.headers["Channel"].startswith(desk_channel_prefix))
    reply = await services.ami.action({"Action": "BlindTransfer", "Channel": entered.headers["Channel"],
                                       "Exten": to, "Context": "from-phones"})
    assert reply.get("Response") == "Success", reply
    return entered.headers["Linkedid"]


def agrees_with_backfill(services: Any, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The same call rebuilt from the CDR alone (as after an outage) says the same."""
    rebuilt = record_from_cdr(rows, services.calls.config)
    assert rebuilt is not None
    assert (rebuilt.direction, rebuilt.call_type, rebuilt.answered_by) == (
        record["direction"], record["call_type"], record["answered_by_ext"])
    assert abs(rebuilt.talk_seconds - record["talk_seconds"]) < 1.0 + 0.25, (rebuilt, record)


def talk_in_cdr(rows: list[dict[str, Any]], patient_channel: str) -> int:
    """The patient's talk as the CDR has it: the billsec of every answered row of their channel."""
    return sum(int(r["billsec"]) for r in rows if r["disposition"] == "ANSWERED"
               and patient_channel in (r["channel"], r["dstchannel"]))


async def transferred_call(server: Any, tmp_path: Path, fixture: str, *, target_ring_ms: int,
                           talk_ms: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The patient calls the linear queue, 101 answers and transfers them to 103: our record
    of it and the CDR's rows."""
    services, log = server
    procs = await start_phones(services, tmp_path, {"101": {"ring_ms": 800}, "103": {"ring_ms": target_ring_ms}})
    call = await start_operator_call(services.settings, ANNA, LINEAR, tmp_path, talk_ms=talk_ms)
    linkedid = await transfer(services, log, "PJSIP/101-", "103")
    assert await call.wait(60) == 0, call.errors
    await stop_all(*procs.values())
    record = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=2)
    keep_fixture(tmp_path, fixture)
    return record, rows


async def test_incoming_call_transferred_to_a_colleague(server, tmp_path: Path) -> None:
    services, _ = server
    await patients.add_patient(services.db, "Петрова", "Анна", "Сергеевна", phone_numbers=(ANNA,))
    r, rows = await transferred_call(server, tmp_path, "transfer_incoming", target_ring_ms=1500, talk_ms=7000)
    assert r["direction"] == "incoming" and r["call_type"] == "incoming" and r["did"] == LINEAR
    assert r["caller_kind"] == "patient" and r["phone_e164"] == ANNA
    assert r["answered_by_ext"] == "101"  # who picked it up, as the CDR's first answered row
    assert [(leg["extension"], leg["outcome"]) for leg in r["legs"]] == [("101", "answered"), ("103", "answered")]
    assert r["missed_by"] == [] and r["hangup_by"] == "caller"
    assert billsec_agrees(talk_in_cdr(rows, rows[0]["channel"]), r["talk_seconds"]), (r["talk_seconds"], rows)
    assert r["talk_seconds"] > 5  # the whole conversation, not the moment before the transfer
    agrees_with_backfill(services, r, rows)


async def test_transfer_to_a_phone_nobody_answers(server, tmp_path: Path) -> None:
    r, rows = await transferred_call(server, tmp_path, "transfer_unanswered", target_ring_ms=NEVER, talk_ms=5000)
    assert r["call_type"] == "incoming" and r["answered_by_ext"] == "101"
    assert [(leg["extension"], leg["outcome"]) for leg in r["legs"]] == [("101", "answered"), ("103", "no_answer")]
    # the patient waited for 103 and gave up: they hung up, and talked only before the transfer
    assert r["hangup_by"] == "caller"
    assert billsec_agrees(talk_in_cdr(rows, rows[0]["channel"]), r["talk_seconds"]), (r["talk_seconds"], rows)
    assert r["talk_seconds"] < 1
    agrees_with_backfill(server[0], r, rows)


async def test_click_to_call_transferred_to_a_colleague(server, tmp_path: Path) -> None:
    services, log = server
    procs = await start_phones(services, tmp_path, {"101": {"ring_ms": 500}, "103": {"ring_ms": 1000}}, others=False)
    far = await start_operator_uas(services.settings, tmp_path, ring_ms=800, hangup_ms=6000)
    linkedid = await originate(services.ami, OriginateRequest("101", "79031112233", user_id=None))
    assert linkedid
    # 101 hands the patient over once they talk (the trunk's channel is the far party)
    assert await transfer(services, log, "PJSIP/101-", "103") == linkedid
    await stop_all(far, *procs.values(), wait=30)
    r = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=2)
    keep_fixture(tmp_path, "transfer_outgoing")
    assert r["direction"] == "outgoing" and r["call_type"] == "outgoing" and r["phone_e164"] == "+79031112233"
    assert r["answered_by_ext"] == "101" and r["hangup_by"] == "callee"  # the patient ended it
    trunk = next(row["dstchannel"] for row in rows if row["dstchannel"].startswith("PJSIP/operator"))
    assert billsec_agrees(talk_in_cdr(rows, trunk), r["talk_seconds"]), (r["talk_seconds"], rows)
    assert r["talk_seconds"] > 4
    agrees_with_backfill(services, r, rows)


async def test_incoming_call_transferred_to_a_mobile(server, tmp_path: Path) -> None:
    """101 sends the patient on to a doctor's mobile by the operator: the call stays the
    patient's (their number, the clinic number they called), and the mobile sees the clinic's
    number, not the patient's."""
    services, log = server
    await patients.add_patient(services.db, "Петрова", "Анна", "Сергеевна", phone_numbers=(ANNA,))
    procs = await start_phones(services, tmp_path, {"101": {"ring_ms": 800}})
    mobile = await start_operator_uas(services.settings, tmp_path, ring_ms=1000)
    call = await start_operator_call(services.settings, ANNA, LINEAR, tmp_path, talk_ms=6000)
    linkedid = await transfer(services, log, "PJSIP/101-", "79035556677")
    assert await call.wait(60) == 0, call.errors
    await stop_all(mobile, procs["101"], wait=20)
    await stop_all(procs["102"], procs["103"], wait=0)  # the linear queue never reached them
    r = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=2)
    keep_fixture(tmp_path, "transfer_to_mobile")
    assert (r["direction"], r["call_type"], r["did"], r["phone_e164"]) == ("incoming", "incoming", LINEAR, ANNA)
    assert r["caller_kind"] == "patient" and r["answered_by_ext"] == "101"
    assert [(leg["extension"], leg["outcome"]) for leg in r["legs"]] == [("101", "answered"), ("operator", "answered")]
    assert r["hangup_by"] == "caller" and r["recording"] == f"{rows[0]['uniqueid']}.wav"
    assert billsec_agrees(talk_in_cdr(rows, rows[0]["channel"]), r["talk_seconds"]), (r["talk_seconds"], rows)
    assert r["talk_seconds"] > 4
    agrees_with_backfill(services, r, rows)
    outside = next(row["dstchannel"] for row in rows if row["dstchannel"].startswith("PJSIP/operator"))
    shown = [e.headers.get("CallerIDNum") for e in log.events
             if e.headers.get("Channel") == outside and e.name in ("NewCallerid", "Newstate", "DialState")]
    assert LINEAR in shown and ANNA.lstrip("+") not in shown, shown

"""The website callback robot through the real Asterisk (seed 003): desk phone 101 (SIPp) answers
and presses a key (RFC 2833), the robot says the request and sends the administrator's channel
on to dial the patient through the operator trunk (SIPp), and the request ends in the right
state: contacted (bridged > 10 s, the clinic e-mailed «Не надо перезванивать» at a real SMTP
server, the CRM call and Asterisk's CDR agree), already booked (9), the patient's side failed
(busy: the SMS at the local gateway), nobody at the clinic, a short talk, a patient who booked
meanwhile (no call at all), and giving up after 2.5 h (the e-mail «перезвоните пациенту»)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestServer

from crm import callbacks, patients, schedule
from crm.clock import SettableClock
from crm.demo import load_demo
from crm.rules import callback as cr
from pbx.app import SERVICES, Services, build_app
from pbx.outbound.sipp import NEVER, start_desk_phone, start_operator_uas
from pbx.settings import GatewaySettings, MailSettings, RobotSettings, Settings
from tests.gateway_fake import FakeGateway
from tests.integration.helpers import billsec_agrees, wait_call, wait_cdr
from tests.smtp_fake import Inbox, free_port, serve

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
TZ = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=TZ).timestamp()  # a Wednesday, the clinic open
# a number of its own per test: Asterisk's CDR (backfilled into each fresh CRM) keeps the calls
# of earlier runs, and an answered call with the number would close the request (as it should)
PATIENT = "+79030000000"


@pytest.fixture(autouse=True)
def _fresh_patient_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "PATIENT", f"+7903{random.randrange(10**7):07d}")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = serve(inbox, port)
    yield inbox, port
    controller.stop()



@pytest.fixture
async def app(asterisk, test_settings: Settings, tmp_path: Path, gateway: FakeGateway,
              smtp: tuple[Inbox, int]) -> AsyncIterator[tuple[Services, SettableClock]]:
    settings = dataclasses.replace(
        test_settings, database=tmp_path / "crm.sqlite",
        robot=RobotSettings(tts_rate=320, tick_seconds=0.5),
        gateway=GatewaySettings(sms_url=gateway.url("sms"), token=gateway.token),
        mail=MailSettings(host="127.0.0.1", port=smtp[1], security="none", sender="robot@clinic.test"),
    )
    clock = SettableClock(NOW)
    application = build_app(settings, manage_asterisk=False, clock=clock, run_escort=False)
    srv = TestServer(application, host="127.0.0.1")
    await srv.start_server()
    services = application[SERVICES]
    assert services.ari is not None and await services.ari.wait_connected(10)
    await load_demo(services.db, now=NOW, robot_patients=False)
    await callbacks.save_settings(services.db, cr.CallbackSettings(
        clinic_target="101", ring_clinic_seconds=6, ring_patient_seconds=8, key_wait_seconds=3, prompt_repeats=1,
        sms_after=1, emails="reception@clinic.test", clinic_phone="+7 495 111-00-01"))
    yield services, clock
    await srv.close()


async def new_request(services: Services, now: float, **kw: str) -> int:
    src = await callbacks.save_source(services.db, "napopravku", "НаПоправку")
    fields = {"doctor": "Кузнецова Ольга Викторовна", "service": "Чистка зубов"} | kw
    intake = await callbacks.create_request(services.db, callbacks.NewRequest(
        phone=PATIENT, source_name="НаПоправку", source_id=src, external_id=f"ext-{now}",
        patient_name="Иванова Мария", **fields), now)
    return intake.request_id


async def attempt(services: Services, clock: SettableClock) -> None:
    svc = services.callbacks
    assert svc is not None
    await svc.tick()
    if svc.active != 1:
        rows = await services.db.fetchall("SELECT * FROM jobs WHERE kind = 'callback'")
        raise AssertionError(f"the robot did not place the call: {[dict(r) for r in rows]} "
                             f"{services.calls.live if services.calls else ''} {clock.now()}")
    await asyncio.wait_for(svc.idle(), 60)
    await svc.tick()  # the letters and the SMS


async def state(services: Services, request_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    req = await callbacks.request(services.db, request_id)
    assert req is not None
    return req, (await callbacks.attempts(services.db, [request_id]))[request_id]


async def wait_letters(inbox: Inbox, n: int) -> None:
    for _ in range(50):
        if len(inbox.letters) >= n:
            return
        await asyncio.sleep(0.1)


async def test_admin_presses_a_key_and_talks_with_the_patient(app, tmp_path: Path, smtp) -> None:
    services, clock = app
    inbox, _ = smtp
    rid = await new_request(services, NOW)
    cards: list[Any] = []
    assert services.calls is not None
    services.calls.listeners.append(lambda change: cards.append(getattr(change, "call", None)))
    phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=500, keys="1")
    far = await start_operator_uas(services.settings, tmp_path, ring_ms=800, hangup_ms=12_500)
    await attempt(services, clock)
    req, tries = await state(services, rid)
    assert (req["state"], req["outcome"]) == ("closed", cr.CLOSED_CONTACTED), tries
    # 101's live card: the outgoing call to the patient, talking, then ended
    mine = [c for c in cards if c is not None and c.endpoint == "101" and c.direction == "outgoing"]
    assert [c.status for c in mine if c.status == "talking"] and mine[-1].status == "ended", mine
    assert any(PATIENT.lstrip("+") in c.caller or PATIENT in c.caller for c in mine if c.status == "talking"), mine
    t = tries[0]
    assert t["outcome"] == cr.CONTACTED and t["admin_ext"] == "101" and t["talk_seconds"] > 10
    assert t["linkedid"] == f"{t['channel_base']}-101" == req["call_linkedid"]
    # an ordinary outgoing call of administrator 101, with the clinic's caller ID, recorded
    call = await wait_call(services, t["linkedid"])
    assert (call["direction"], call["answered_by_ext"], call["phone_e164"]) == ("outgoing", "101", PATIENT)
    assert call["source"] == "ami" and call["call_type"] == "outgoing", call
    from web.history import RECORDING_NAME
    assert RECORDING_NAME.match(call["recording"]), call["recording"]  # the panel serves it
    # MixMonitor's file (the SIPp parties send no audio of their own here, so it may hold only
    # what the echo carried; real audio is checked on the incoming call's recording)
    assert (services.settings.recordings_dir / call["recording"]).is_file()
    assert call["recording"] and abs(call["talk_seconds"] - t["talk_seconds"]) < 1.5
    cdr = await wait_cdr(services.settings.cdr_db_path, t["linkedid"])
    bridged = [r for r in cdr if r["disposition"] == "ANSWERED" and r["dstchannel"].startswith("PJSIP/operator")]
    # the CDR row is the administrator's channel: its answer is the administrator's, so its
    # billsec holds the robot's words and the patient's ringing too; the whole call agrees
    total = (datetime.fromisoformat(call["ended_at"]) - datetime.fromisoformat(call["started_at"])).total_seconds()
    assert bridged and billsec_agrees(bridged[0]["duration"], total), (total, cdr)
    assert float(bridged[0]["billsec"]) >= call["talk_seconds"] - 1, cdr
    assert "74951110001" in {r["src"] for r in cdr}, cdr
    await wait_letters(inbox, 1)
    assert [m["subject"] for m in inbox.letters] == ["Заявка с НаПоправку — Не надо перезванивать"]
    assert "Иванова Мария" in inbox.letters[0]["body"] and PATIENT in inbox.letters[0]["body"]
    assert inbox.letters[0]["to"] == "reception@clinic.test"
    await phone.wait(10)
    await far.wait(10)


async def test_nine_closes_it_without_calling_the_patient(app, tmp_path: Path, smtp, gateway) -> None:
    services, clock = app
    rid = await new_request(services, NOW)
    phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=500, keys="9")
    await attempt(services, clock)
    req, tries = await state(services, rid)
    assert (req["state"], req["outcome"]) == ("closed", cr.CLOSED_ALREADY_BOOKED)
    assert tries[0]["outcome"] == cr.ALREADY_BOOKED and tries[0]["linkedid"] == ""
    assert smtp[0].letters == [] and gateway.to(PATIENT) == []
    # the robot ringing an administrator is no call of the clinic's: no record, no card left
    await services.calls.flush()  # type: ignore[union-attr]
    assert await services.db.fetchall("SELECT * FROM calls WHERE linkedid LIKE ?",
                                      (tries[0]["channel_base"] + "%",)) == []
    assert not any(services.calls.live.values())  # type: ignore[union-attr]
    await phone.wait(10)


async def test_busy_patient_gets_the_sms_and_a_retry_in_five_minutes(app, tmp_path: Path, gateway) -> None:
    services, clock = app
    rid = await new_request(services, NOW)
    phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=500, keys="1")
    far = await start_operator_uas(services.settings, tmp_path, behaviour="busy")
    await attempt(services, clock)
    req, tries = await state(services, rid)
    assert req["state"] == "open" and tries[0]["outcome"] == cr.PATIENT_BUSY and tries[0]["leg"] == "patient"
    job = await services.db.fetchone("SELECT due_ts, state FROM jobs WHERE job_key = ?", (f"callback:{rid}",))
    assert job["state"] == "pending" and job["due_ts"] == pytest.approx(NOW + 300)
    texts = [m["text"] for m in gateway.to(PATIENT)]
    assert texts == [cr.sms_text("НаПоправку", "+7 495 111-00-01")]
    await phone.wait(10)
    await far.wait(10)


async def test_nobody_at_the_clinic_then_a_short_talk(app, tmp_path: Path) -> None:
    services, clock = app
    rid = await new_request(services, NOW)
    phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=NEVER)
    await attempt(services, clock)
    req, tries = await state(services, rid)
    assert req["state"] == "open" and tries[0]["outcome"] == cr.CLINIC_NO_ANSWER and tries[0]["leg"] == "clinic"
    await phone.wait(10)
    await services.calls.flush()  # type: ignore[union-attr]
    assert await services.db.fetchall("SELECT * FROM calls WHERE linkedid LIKE ?",
                                      (tries[0]["channel_base"] + "%",)) == []
    # five minutes later: the administrator answers, the patient talks 5 s only
    clock.advance(300)
    phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=500, keys="1")
    far = await start_operator_uas(services.settings, tmp_path, ring_ms=500, hangup_ms=5000)
    await attempt(services, clock)
    req, tries = await state(services, rid)
    assert req["state"] == "open" and tries[1]["outcome"] == cr.PATIENT_SHORT and 4 < tries[1]["talk_seconds"] <= 10
    await phone.wait(10)
    await far.wait(10)


async def test_a_patient_who_booked_meanwhile_is_not_called_and_the_end_mails_the_clinic(app, smtp) -> None:
    services, clock = app
    db = services.db
    rid = await new_request(services, NOW)
    pid = await patients.add_patient(db, "Иванова", "Мария", "", phone_numbers=(PATIENT,))
    await schedule.book(db, patient_id=pid, doctor_id=1, starts_at=datetime(2026, 12, 4, 10, tzinfo=TZ),
                        minutes=30, now=NOW + 60)
    clock.advance(120)
    svc = services.callbacks
    assert svc is not None
    await svc.tick()
    assert svc.active == 0  # no administrator was rung
    req, tries = await state(services, rid)
    assert (req["state"], req["outcome"], tries) == ("closed", cr.CLOSED_OTHER_MEANS, [])
    # another request, first tried yesterday at 18:00: its 2.5 open hours ended at 20:30 (the
    # hours are the clinic's, #32), so the robot stops and e-mails the clinic
    other = await callbacks.create_request(db, callbacks.NewRequest(phone="+79035550000", source_name="НаПоправку"),
                                           clock.now())
    async with db.transaction() as tx:
        await tx.execute("UPDATE callback_requests SET first_try_ts = ? WHERE id = ?",
                         (NOW - 16 * 3600, other.request_id))
    await svc.tick()
    await svc.tick()
    req, _ = await state(services, other.request_id)
    assert (req["state"], req["outcome"]) == ("closed", cr.CLOSED_GAVE_UP)
    await wait_letters(smtp[0], 1)
    assert [m["subject"] for m in smtp[0].letters] == ["Заявка с НаПоправку — перезвоните пациенту"]


async def test_a_patient_who_does_not_answer_rings_as_long_as_the_settings_say(app, tmp_path: Path) -> None:
    services, clock = app
    rid = await new_request(services, NOW, doctor="", service="")
    phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=500, keys="1")
    far = await start_operator_uas(services.settings, tmp_path, ring_ms=NEVER)
    started = asyncio.get_running_loop().time()
    await attempt(services, clock)
    took = asyncio.get_running_loop().time() - started
    _, tries = await state(services, rid)
    assert tries[0]["outcome"] == cr.PATIENT_NO_ANSWER and tries[0]["leg"] == "patient"
    assert took < 8 + 15, took  # CLINIC_RING (8 s) ended the ringing, not the dialplan's 60 s
    call = await wait_call(services, tries[0]["linkedid"])
    assert call["call_type"] == "outgoing_unanswered" and call["answered_by_ext"] == "101"
    await phone.wait(10)
    await far.wait(10)


async def test_a_server_stopped_mid_call_closes_the_attempt_and_tries_again_once(
        asterisk, test_settings: Settings, tmp_path: Path, gateway: FakeGateway, smtp) -> None:
    settings = dataclasses.replace(
        test_settings, database=tmp_path / "crm.sqlite", robot=RobotSettings(tts_rate=320, tick_seconds=0.5),
        gateway=GatewaySettings(sms_url=gateway.url("sms"), token=gateway.token))
    clock = SettableClock(NOW)

    async def start() -> tuple[TestServer, Services]:
        application = build_app(settings, manage_asterisk=False, clock=clock, run_escort=False)
        srv = TestServer(application, host="127.0.0.1")
        await srv.start_server()
        services = application[SERVICES]
        assert services.ari is not None and await services.ari.wait_connected(10)
        return srv, services

    srv, services = await start()
    await load_demo(services.db, now=NOW, robot_patients=False)
    await callbacks.save_settings(services.db, cr.CallbackSettings(
        clinic_target="101", ring_clinic_seconds=6, key_wait_seconds=20, prompt_repeats=1))
    rid = await new_request(services, NOW)
    phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=300)  # answers, no key
    assert services.callbacks is not None
    await services.callbacks.tick()
    for _ in range(100):  # the administrator is listening to the prompt
        _, tries = await state(services, rid)
        if tries and tries[0]["admin_ts"]:
            break
        await asyncio.sleep(0.1)
    assert tries[0]["admin_ext"] == "101"
    await srv.close()  # the server goes away mid-call
    assert await phone.wait(10) == 0  # its channel was hung up (a BYE), not left up in Asterisk

    srv, services = await start()
    try:
        _, tries = await state(services, rid)
        assert [t["outcome"] for t in tries] == [cr.INTERRUPTED]
        assert services.callbacks is not None
        await services.callbacks.tick()
        assert services.callbacks.active == 0  # not at once: a minute later
        clock.advance(61)
        phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=300, keys="9")
        await attempt(services, clock)
        req, tries = await state(services, rid)
        assert [(t["attempt"], t["outcome"]) for t in tries] == [(1, cr.INTERRUPTED), (2, cr.ALREADY_BOOKED)]
        assert req["outcome"] == cr.CLOSED_ALREADY_BOOKED
        await phone.wait(10)
    finally:
        await srv.close()


async def test_the_demo_phones_take_a_request_through_the_queue(app, tmp_path: Path) -> None:
    """What `make run` + `clinic-pbx demo-phones` + `clinic-pbx demo-request` do: the robot rings
    the reception queue's free phones, one picks up and presses 1, the patient talks."""
    from pbx.cli.demo import run_demo_phones

    services, clock = app
    await callbacks.save_settings(services.db, cr.CallbackSettings(ring_clinic_seconds=8, ring_patient_seconds=8))
    assert services.calls is not None
    for _ in range(50):
        if services.calls.members.get("reception-ringall"):
            break
        await asyncio.sleep(0.1)
    assert services.calls.members["reception-ringall"] == {"101", "102", "103"}
    stop = asyncio.Event()
    phones = asyncio.create_task(run_demo_phones(services.settings, tmp_path, stop, ring_ms=400, talk_ms=11_500))
    try:
        await asyncio.sleep(0.5)
        rid = await new_request(services, NOW)
        await attempt(services, clock)
        req, tries = await state(services, rid)
        assert req["outcome"] == cr.CLOSED_CONTACTED, tries
        assert tries[0]["admin_ext"] in {"101", "102", "103"}
    finally:
        stop.set()
        assert await phones == []


async def test_asterisk_killed_mid_call_closes_the_attempt_as_interrupted(app, asterisk, tmp_path: Path) -> None:
    """kill -9: no hang-up event ever comes; after the reconnect the runner finds the channel
    gone and the flow ends at once (not at its 3-hour ceiling), retried like any failure."""
    services, clock = app
    await callbacks.save_settings(services.db, cr.CallbackSettings(
        clinic_target="101", ring_clinic_seconds=6, key_wait_seconds=20, prompt_repeats=1))
    rid = await new_request(services, NOW)
    phone = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=300)  # answers, no key
    svc = services.callbacks
    assert svc is not None
    await svc.tick()
    for _ in range(100):
        _, tries = await state(services, rid)
        if tries and tries[0]["admin_ts"]:
            break
        await asyncio.sleep(0.1)
    assert tries[0]["admin_ext"] == "101"
    pid = asterisk.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the call is gone and no event will say so
    for _ in range(100):  # the process is gone once the kernel reaped it
        if not asterisk.running:
            break
        await asyncio.sleep(0.05)
    await asyncio.to_thread(asterisk.start)
    await asyncio.wait_for(svc.idle(), 30)  # ended by the runner's check after the reconnect
    req, tries = await state(services, rid)
    assert req["state"] == "open" and [t["outcome"] for t in tries] == [cr.INTERRUPTED]
    job = await services.db.fetchone("SELECT state, due_ts FROM jobs WHERE job_key = ?", (f"callback:{rid}",))
    assert job["state"] == "pending" and job["due_ts"] == pytest.approx(NOW + 300)  # tried again
    phone.kill()
    await phone.wait(5)

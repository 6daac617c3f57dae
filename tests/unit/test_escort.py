"""Pre-visit escort without the robot's calls (those run against the real Asterisk in the
integration tests): planning, windows with a set clock, messages through a local HTTP
gateway with fallbacks and retries, replies and delivery webhooks, the patient's link page,
restart recovery without duplicates, settings applied to planned jobs, write-offs, reports."""

from __future__ import annotations

import json
import re
import wave
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import escort, escort_reports, schedule, signatures, users
from crm.clock import SettableClock
from crm.demo import load_demo
from crm.jobs import job_columns
from crm.rules import escort as rules
from crm.rules.escort import EscortSettings
from pbx.app import SERVICES, build_app
from pbx.jobs.escort import EscortService
from pbx.settings import AsteriskSettings, GatewaySettings, Settings, with_generated_secrets
from tests.gateway_fake import FakeGateway
from tests.unit.panel_client import log_in

TZ = ZoneInfo("Europe/Moscow")
PETROVA_PHONE = "+79161234567"


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ).timestamp()



@pytest.fixture
async def env(tmp_path: Path, gateway: FakeGateway):
    gw = GatewaySettings(push_url=gateway.url("push"), whatsapp_url=gateway.url("whatsapp"),
                         sms_url=gateway.url("sms"), token=gateway.token)
    settings = with_generated_secrets(Settings(
        state_dir=tmp_path, asterisk=AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0),
        gateway=gw,
    ))
    clock = SettableClock(at(23, 11))
    app = build_app(settings, clock=clock, run_escort=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    db = app[SERVICES].db
    await load_demo(db, now=clock.now(), robot_patients=False)
    await escort.save_settings(db, EscortSettings(confirmation_mode="messages"))
    yield app, server, clock
    await server.close()


async def book(app, clock, day: int = 25, hour: int = 10, **kw) -> int:
    return await schedule.book(app[SERVICES].db, patient_id=1, doctor_id=1,
                               starts_at=datetime(2026, 11, day, hour, tzinfo=TZ), minutes=30,
                               now=clock.now(), **kw)


async def jobs(app) -> dict[str, dict]:
    rows = await app[SERVICES].db.fetchall(f"SELECT {job_columns()} FROM jobs ORDER BY id")
    return {r["scenario"]: dict(r) for r in rows}


async def test_three_scenarios_through_the_gateway(env, gateway) -> None:
    app, server, clock = env
    service = app[SERVICES].escort
    appt = await book(app, clock)
    await service.tick()
    details = gateway.to(PETROVA_PHONE)
    assert [m["channel"] for m in details] == ["whatsapp"]
    assert "Улыбка" in details[0]["text"] and "/e/" in details[0]["text"]
    assert "25 ноября в 10:00" in details[0]["text"]
    clock.set(at(24, 8, 59))
    await service.tick()
    assert len(gateway.received) == 1  # confirmation waits for 09:00 the day before
    clock.set(at(24, 9))
    await service.tick()
    confirm = gateway.to(PETROVA_PHONE)[-1]
    assert "1 — подтвердить" in confirm["text"]
    # the patient answers "1" on WhatsApp: confirmed at once; a later "3" is ignored
    client = TestClient(server)
    await client.start_server()
    secret = app[SERVICES].settings.gateway.webhook_token

    def signed(body: dict) -> dict:
        raw = json.dumps(body).encode()
        ts = str(clock.now())
        return {"data": raw, "headers": {"Content-Type": "application/json", signatures.TIMESTAMP_HEADER: ts,
                                         signatures.SIGNATURE_HEADER: signatures.sign(secret, ts, raw)}}

    assert (await client.post("/api/v1/gateway/reply", json={"from": PETROVA_PHONE, "text": "1"})).status == 401
    assert (await client.post("/api/v1/gateway/reply", json={"from": PETROVA_PHONE, "text": "1"},
                              headers={"Authorization": f"Bearer {secret}"})).status == 401  # signed only
    r = await (await client.post("/api/v1/gateway/reply", **signed({"from": PETROVA_PHONE, "text": " 1 "}))).json()
    assert r["result"] == "accepted"
    assert (await schedule.get_appointment(app[SERVICES].db, appt))["status"] == "confirmed"
    r = await (await client.post("/api/v1/gateway/reply", **signed({"from": PETROVA_PHONE, "text": "3"}))).json()
    assert r["result"] == "ignored_not_unconfirmed"
    assert (await schedule.get_appointment(app[SERVICES].db, appt))["status"] == "confirmed"
    r = await (await client.post("/api/v1/gateway/status", **signed({"id": confirm["id"], "state": "delivered"}))).json()
    assert r["updated"]
    clock.set(at(25, 8))
    await service.tick()
    assert "напоминаем" in gateway.to(PETROVA_PHONE)[-1]["text"]
    # the next day: one write-off per day, scenario and channel, never twice
    clock.set(at(26, 0, 10))
    await service.tick()
    await service.tick()
    rows = await escort_reports.report_write_offs(app[SERVICES].db, "2026-11-01", "2026-11-30", None)
    assert [(w["day"], w["scenario"], w["channel"], w["messages"], w["amount"]) for w in rows] == [
        ("2026-11-23", "details", "whatsapp", 1, 2.0),
        ("2026-11-24", "confirmation", "whatsapp", 1, 2.0),
        ("2026-11-25", "reminder", "whatsapp", 1, 2.0),
    ]
    log = await escort.appointment_log(app[SERVICES].db, appt)
    assert {(e["what"], e["outcome"]) for e in log} >= {("message", "sent"), ("reply", "accepted"), ("status", "confirmed")}
    await client.close()


async def test_fallback_chain_retries_and_prices(env, gateway) -> None:
    app, _, clock = env
    db = app[SERVICES].db
    service = app[SERVICES].escort
    async with db.transaction() as tx:
        await tx.execute("UPDATE patients SET push_enabled = 1 WHERE id = 1")
    gateway.no_account["push"].add(PETROVA_PHONE)
    gateway.no_account["whatsapp"].add(PETROVA_PHONE)
    gateway.fail_next = 1  # the first request fails: retried a minute later
    await book(app, clock)
    await service.tick()
    assert gateway.received == []
    clock.advance(61)
    await service.tick()
    assert [m["channel"] for m in gateway.to(PETROVA_PHONE)] == ["sms"]
    states = [(r["channel"], r["state"], r["price"]) for r in await db.fetchall("SELECT * FROM outbox ORDER BY id")]
    assert states == [("push", "no_account", 0), ("whatsapp", "no_account", 0), ("sms", "sent", 5)]


async def test_windows_exclusions_and_forced_sms(env, gateway) -> None:
    app, _, clock = env
    db = app[SERVICES].db
    service = app[SERVICES].escort
    clock.set(at(23, 22, 30))  # booked at night: no details
    await book(app, clock)
    clock.set(at(23, 22, 31))
    await service.tick()
    assert (await jobs(app))["details"]["reason"].startswith("Запись создана ночью")
    # «СМС оповещение» in the booking form: sent at once, even at night
    await schedule.book(db, patient_id=1, doctor_id=2, starts_at=datetime(2026, 11, 26, 12, tzinfo=TZ),
                        minutes=30, now=clock.now(), notify_requested=True)
    await service.tick()
    assert [m["channel"] for m in gateway.to(PETROVA_PHONE)] == ["sms"]
    # Иванов has a landline among his contacts: nothing is sent, with the reason
    await schedule.book(db, patient_id=2, doctor_id=2, starts_at=datetime(2026, 11, 27, 12, tzinfo=TZ),
                        minutes=30, now=clock.now())
    clock.set(at(26, 9))
    await service.tick()
    reasons = {r["reason"] for r in await db.fetchall("SELECT reason FROM jobs WHERE subject_id = 7")}
    assert "В контактах пациента стационарный или иностранный номер" in reasons


async def test_settings_apply_to_planned_jobs_and_reschedule(env, gateway) -> None:
    app, _, clock = env
    db = app[SERVICES].db
    service = app[SERVICES].escort
    appt = await book(app, clock)
    await service.tick()
    await escort.save_settings(db, EscortSettings(confirmation_enabled=False))
    clock.set(at(24, 10))
    await service.tick()
    assert (await jobs(app))["confirmation"]["reason"] == "Сценарий выключен"
    # moved to the 27th: no second details, a new confirmation job for the new time
    await escort.save_settings(db, EscortSettings(confirmation_mode="messages"))
    await schedule.reschedule(db, appt, datetime(2026, 11, 27, 11, tzinfo=TZ), 30, clock.now())
    clock.set(at(26, 9, 30))
    await service.tick()
    texts = [m["text"] for m in gateway.to(PETROVA_PHONE)]
    assert len(texts) == 2 and "27 ноября в 11:00" in texts[1] and "подтвердить" in texts[1]
    n = await db.fetchone("SELECT COUNT(*) FROM jobs WHERE subject_id = ? AND scenario = 'details'", (appt,))
    assert n[0] == 1


async def test_restart_recovers_without_a_second_call(env, gateway) -> None:
    app, _, clock = env
    db = app[SERVICES].db
    await escort.save_settings(db, EscortSettings(confirmation_mode="robot"))
    await book(app, clock)
    old = app[SERVICES].escort
    await old.tick()  # details sent, confirmation planned
    clock.set(at(24, 10))
    job = next(j for j in await escort.claim_due(db, clock.now(), 10) if j["scenario"] == "confirmation")
    await escort.start_robot_call(db, job, 1, "robot-crashed-1", clock.now())
    # the server dies here, mid-call; a new one starts on the same database
    fresh = EscortService(db, app[SERVICES].settings, clock, old.gateway, None, old.prompts)
    await fresh.start(loop=False)
    await fresh.tick()
    await fresh.tick()
    calls = await db.fetchall("SELECT outcome FROM robot_calls")
    assert [c[0] for c in calls] == ["interrupted"]
    texts = [m["text"] for m in gateway.to(PETROVA_PHONE)]
    assert len(texts) == 2 and "подтвердить" in texts[1]
    # and a third start neither calls nor sends again
    again = EscortService(db, app[SERVICES].settings, clock, old.gateway, None, old.prompts)
    await again.start(loop=False)
    clock.advance(3600)
    await again.tick()
    assert len(gateway.to(PETROVA_PHONE)) == 2
    assert (await jobs(app))["confirmation"]["state"] == "done"


async def test_greetings_are_rendered_ahead_of_the_calls(env, gateway) -> None:
    app, _, clock = env
    service = app[SERVICES].escort
    await book(app, clock)  # the 25th at 10:00: the confirmation call is due on the 24th from 09:00
    await service.tick()
    assert await service.prerender(at(24, 8)) == 0  # nothing due before then
    assert await service.prerender(at(24, 12)) == 1
    subject = await escort.subject(app[SERVICES].db, (await jobs(app))["confirmation"]["appointment_id"], TZ)
    greeting = service.prompts.folder / f"{service.prompts.key(rules.robot_text(subject.wording))}.wav"
    with wave.open(str(greeting)) as w:  # a real 8 kHz prompt, not an empty file
        assert w.getframerate() == 8000 and w.getnframes() > 8000
    assert await service.prerender(at(24, 12)) == 0  # cached: not rendered twice


async def test_demo_gateway_logs_messages_as_sent(tmp_path: Path, caplog) -> None:
    settings = with_generated_secrets(Settings(
        state_dir=tmp_path, asterisk=AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0),
        gateway=GatewaySettings(demo=True),
    ))
    clock = SettableClock(at(23, 11))
    app = build_app(settings, clock=clock, run_escort=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await load_demo(app[SERVICES].db, now=clock.now(), robot_patients=False)
        await book(app, clock)
        with caplog.at_level("INFO", logger="pbx.outbound.gateways"):
            await app[SERVICES].escort.tick()
        rows = await app[SERVICES].db.fetchall("SELECT channel, state, body FROM outbox")
        assert [(r["channel"], r["state"]) for r in rows] == [("whatsapp", "sent")]
        assert "not sent anywhere" in caplog.text and rows[0]["body"] in caplog.text
    finally:
        await server.close()


async def test_patient_link_page(env, gateway) -> None:
    app, server, clock = env
    db = app[SERVICES].db
    appt = await book(app, clock)
    client = TestClient(server)
    await client.start_server()
    secret = escort.link_secret(app[SERVICES].settings.web.cookie_secret)
    token = escort.link_token(secret, appt, (await schedule.get_appointment(db, appt))["starts_ts"])
    page = await (await client.get(f"/e/{token}")).text()
    assert "Кузнецова Ольга Викторовна" in page and "Подтвердить" in page
    assert (await client.get(f"/e/{appt}-deadbeef")).status == 404
    assert (await client.get("/e/1-%2E%2E%2Fsecrets")).status == 404
    # only a slot the page offered can be taken: a hand-made one (another day, outside the
    # doctor's hours) is refused
    offered = re.findall(r'name="slot" value="([^"]+)"', page)
    assert "2026-11-26T11:00" in offered and "2026-11-26T15:00" not in offered
    for foreign in ("2026-11-26T15:00", "2026-11-26T03:00", "2027-01-10T10:00"):
        r = await client.post(f"/e/{token}", data={"action": "move", "slot": foreign}, allow_redirects=False)
        assert r.status == 409, foreign
    r = await client.post(f"/e/{token}", data={"action": "move", "slot": "2026-11-26T11:00"}, allow_redirects=False)
    assert r.status == 302
    moved = await schedule.get_appointment(db, appt)
    assert moved["starts_at"] == "2026-11-26T11:00"
    assert (await client.get(f"/e/{token}")).status == 404  # the old link points at the old time
    new_token = r.headers["Location"].split("/e/")[1].split("?")[0]
    await client.post(f"/e/{new_token}", data={"action": "cancelled"})
    assert (await schedule.get_appointment(db, appt))["status"] == "cancelled"
    clock.set(moved["ends_ts"] + 1)  # the appointment is over: its link is dead
    assert (await client.get(f"/e/{new_token}")).status == 404
    await client.close()


async def test_campaign_view_and_reports_pages(env, gateway) -> None:
    app, server, clock = env
    db = app[SERVICES].db
    await users.create_user(db, "boss", "pw-boss-12", role="director")
    await book(app, clock, day=24, hour=12)
    await app[SERVICES].escort.tick()
    client = TestClient(server)
    await client.start_server()
    token = await log_in(client, "boss", "pw-boss-12")
    page = await (await client.get("/escort")).text()
    # booked today for tomorrow: details sent, the confirmation skipped with the seed's reason
    assert "Детали записи" in page and "whatsapp:sent" in page
    assert "Запись создана сегодня на завтра" in page
    reports = await (await client.get("/reports/escort?since=2026-11-20&until=2026-11-30&scenario=details")).text()
    assert "Записи в работе сопровождения" in reports and "Списания" in reports
    assert (await client.get("/reports/escort?scenario=evil")).status == 400
    r = await client.post("/escort/settings", data={"csrf_token": token, "confirmation_mode": "robot",
                                                    "robot_retries": "1", "max_concurrent_calls": "3"})
    assert r.status == 200
    s = await escort.settings(db)
    assert s.robot_retries == 1 and s.max_concurrent_calls == 3 and not s.details_enabled
    await client.close()


async def test_push_after_the_robot_goes_in_a_minute_at_3_roubles(env, gateway) -> None:
    app, _, clock = env
    db = app[SERVICES].db
    async with db.transaction() as tx:
        await tx.execute("UPDATE patients SET push_enabled = 1 WHERE id = 1")
    await book(app, clock)
    await app[SERVICES].escort.tick()
    job = (await jobs(app))["confirmation"] | {"mode": "robot"}
    await escort.enqueue(db, job, "confirm", ("push", "whatsapp", "sms"), PETROVA_PHONE, "текст", clock.now(), TZ)
    service = app[SERVICES].escort
    before = len(gateway.received)
    await service.send_messages()
    assert len(gateway.received) == before  # not yet
    clock.advance(60)
    await service.send_messages()
    assert gateway.received[-1]["channel"] == "push"
    row = await db.fetchone("SELECT price FROM outbox WHERE channel = 'push' AND kind = 'confirm'")
    assert row[0] == 3


async def test_call_now_at_night_asks_first_and_its_messages_wait_for_the_morning(env, gateway) -> None:
    """#37: «Позвонить сейчас» pressed at 00:24 clinic time called the patient and sent the
    fallback messages at night. Now the panel asks first; messages wait for their hours."""
    app, server, clock = env
    db = app[SERVICES].db
    appt = await book(app, clock)
    await users.create_user(db, "boss", "pw-boss-12", role="settings_admin")
    clock.set(at(24, 0, 24))
    client = TestClient(server)
    await client.start_server()
    token = await log_in(client, "boss", "pw-boss-12")
    asked = await client.post("/escort/call-now", data={"appointment": appt, "csrf_token": token})
    page = await asked.text()
    assert asked.status == 200 and "вне часов звонков робота (09:00–20:00)" in page and "00:24" in page
    manual = "SELECT COUNT(*) FROM jobs WHERE manual = 1"
    assert (await db.fetchone(manual))[0] == 0  # nothing placed before the answer
    done = await client.post("/escort/call-now", data={"appointment": appt, "confirmed": "1", "csrf_token": token},
                             allow_redirects=False)
    assert done.status == 302 and (await db.fetchone(manual))[0] == 1
    # the robot did not reach the patient: the confirmation's messages are queued for 09:00
    job = dict(await db.fetchone(f"SELECT {job_columns()} FROM jobs WHERE manual = 1"))
    await escort.enqueue(db, job, "confirmation", ("sms",), PETROVA_PHONE, "текст", clock.now(), TZ)
    due = (await db.fetchone("SELECT next_try_ts FROM outbox WHERE job_id = ?", (job["id"],)))[0]
    assert at(24, 9) <= due < at(24, 9, 5)
    await client.session.close()
    clock.set(at(24, 11))  # in the robot's hours the panel does not ask
    day = TestClient(server)
    await day.start_server()
    token = await log_in(day, "boss", "pw-boss-12")
    again = await day.post("/escort/call-now", data={"appointment": appt, "csrf_token": token}, allow_redirects=False)
    assert again.status == 302 and (await db.fetchone(manual))[0] == 2
    await day.session.close()


def test_message_hours_at_their_edges() -> None:
    from crm.rules import escort as rules

    assert rules.message_time(at(24, 0, 24), TZ, "details") == at(24, 6)
    assert rules.message_time(at(24, 5, 59), TZ, "reminder") == at(24, 6)
    assert rules.message_time(at(24, 6), TZ, "details") == at(24, 6)
    assert rules.message_time(at(24, 20, 59), TZ, "details") == at(24, 20, 59)
    assert rules.message_time(at(24, 21), TZ, "details") == at(25, 6)
    assert rules.message_time(at(24, 20), TZ, "confirmation") == at(25, 9)
    assert rules.message_time(at(24, 19, 59), TZ, "confirmation") == at(24, 19, 59)
    assert rules.message_time(at(24, 0, 24), TZ, "details", asked_for_now=True) == at(24, 0, 24)

"""Outgoing webhooks to the MIS (issue #33): a local aiohttp receiver gets each event once,
signed like the incoming webhook; a receiver that fails gets it again after the back-off; the
history before webhooks were switched on is not sent; the settings page and its log. On SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm import calls, patients, signatures, webhooks
from crm.clock import SettableClock
from crm.rules import webhooks as rules
from crm.rules.call_records import CallRecord, LegRecord
from pbx.app import SERVICES, Adapters, build_app
from tests.unit.panel_client import offline_settings, settings_admin_panel

T0 = 1_796_000_000.0


def record(lid: str, t0: float, caller: str = "+79161234567") -> CallRecord:
    legs = (LegRecord("101", lid + ".1", "answered", t0, t0 + 2, t0 + 9, False),)
    return CallRecord(lid, "incoming", "incoming", "74951110001", caller, "74951110001", "reception-ringall", legs,
                      "101", t0, t0 + 2, t0 + 9, 2.0, 7.0, "caller", "")


class Receiver:
    """The MIS's endpoint: answers ``fail`` times with 500, then 200; keeps what it got."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.got: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=500, text="MIS busy")
        return web.json_response({"ok": True})


@pytest.fixture
async def clinic(tmp_path: Path, storage_setting: dict):
    receiver = Receiver(fail=1)
    mis = web.Application()
    mis.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(mis)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    clock = SettableClock(T0)
    app = build_app(offline_settings(tmp_path, **storage_setting), run_escort=False, adapters=Adapters.offline(),
                    clock=clock)
    async with TestClient(TestServer(app, host="127.0.0.1")):
        yield app[SERVICES], receiver, f"http://127.0.0.1:{port}/hook", clock
    await runner.cleanup()


def _sent(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body in receiver.got]


async def test_each_event_once_signed_and_again_after_a_failure(clinic) -> None:
    services, receiver, url, clock = clinic
    db, hooks = services.db, services.webhooks
    await calls.save_call(db, record("100.0", T0 - 600))  # before webhooks: never sent
    secret = await webhooks.save_config(db, url, list(rules.EVENTS), True)
    pid = await patients.add_patient(db, "Петрова", "Анна", phone_numbers=("+79161234567",))
    await calls.save_call(db, record("200.0", T0 - 60))
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO doctors (full_name, specialty, external_id) VALUES ('Зубов И. И.', 'стоматолог', 'D-1')")
        doctor = (await (await tx.execute("SELECT id FROM doctors WHERE external_id = 'D-1'")).fetchone())[0]
        await tx.execute(
            "INSERT INTO appointments (patient_id, doctor_id, starts_at, ends_at, starts_ts, ends_ts, status, created_ts,"
            " call_linkedid, created_at, updated_at) VALUES (?, ?, '2026-12-20T10:00', '2026-12-20T10:30', ?, ?,"
            " 'unconfirmed', ?, '200.0', 'x', 'x')", (pid, doctor, T0 + 86400, T0 + 88200, T0 - 30))
        appointment = (await (await tx.execute("SELECT id FROM appointments")).fetchone())[0]
        await tx.execute("INSERT INTO escort_log (appointment_id, scenario, ts, what, channel, outcome)"
                         " VALUES (?, 'confirmation', ?, 'call', 'robot', 'confirmed')", (appointment, T0 - 20))
        await tx.execute("INSERT INTO escort_log (appointment_id, scenario, ts, what, channel, outcome)"
                         " VALUES (?, 'confirmation', ?, 'message', 'sms', 'sent')", (appointment, T0 - 19))
        await tx.execute("INSERT INTO callback_requests (source_name, phone, created_ts, state, outcome, closed_ts)"
                         " VALUES ('Сайт', '+79161234567', ?, 'closed', 'contacted', ?)", (T0 - 500, T0 - 10))

    await hooks.tick()
    assert len(receiver.got) == 4  # the call, the booking, the robot's call, the closed request: one try each
    failed = next(d for d in await webhooks.recent(db) if d["last_status"] == 500)
    assert failed["state"] == "pending" and failed["attempts"] == 1 and failed["next_ts"] == T0 + rules.FIRST_RETRY
    await hooks.tick()
    assert len(receiver.got) == 4  # the refused one not before its time
    clock.advance(rules.FIRST_RETRY + 1)
    await hooks.tick()
    await hooks.tick()
    assert len(receiver.got) == 5
    assert all(d["state"] == "delivered" for d in await webhooks.recent(db))

    events = _sent(receiver)
    assert sorted({e["event"] for e in events}) == sorted(rules.EVENTS)
    assert {e["data"]["linkedid"] for e in events if e["event"] == "call_finished"} == {"200.0"}
    robot = next(e for e in events if e["event"] == "robot_outcome")  # its call, not its SMS
    assert robot["data"]["outcome"] == "confirmed" and robot["data"]["appointment"]["id"] == appointment
    closed = next(e for e in events if e["event"] == "request_closed")
    assert closed["data"]["request"]["outcome"] == "contacted"
    booked = next(e for e in events if e["event"] == "appointment_booked")
    assert booked["data"]["doctor"]["external_id"] == "D-1" and booked["data"]["call"]["linkedid"] == "200.0"
    assert len({e["id"] for e in events}) == 4  # the retry carries the same event id
    for headers, body in receiver.got:
        assert signatures.check(secret, headers[signatures.TIMESTAMP_HEADER], headers[signatures.SIGNATURE_HEADER],
                                body, clock.now()) is None
        assert headers["X-Clinic-Event"] in rules.EVENTS
    assert signatures.check("whsec_other", receiver.got[0][0][signatures.TIMESTAMP_HEADER],
                            receiver.got[0][0][signatures.SIGNATURE_HEADER], receiver.got[0][1], clock.now())


async def test_a_receiver_that_never_answers_is_given_up_and_can_be_resent(clinic) -> None:
    services, receiver, url, clock = clinic
    db, hooks = services.db, services.webhooks
    receiver.fail = 10**6
    await webhooks.save_config(db, url, ["call_finished"], True)
    await calls.save_call(db, record("300.0", T0))
    for _ in range(rules.MAX_ATTEMPTS):
        await hooks.tick()
        clock.advance(rules.LONGEST_WAIT + 1)
    [delivery] = await webhooks.recent(db)
    assert delivery["state"] == "failed" and delivery["attempts"] == rules.MAX_ATTEMPTS
    assert len(receiver.got) == rules.MAX_ATTEMPTS
    receiver.fail = 0
    await webhooks.resend(db, delivery["id"], clock.now())
    await hooks.tick()
    assert (await webhooks.recent(db))[0]["state"] == "delivered"
    # switched off: nothing found, nothing sent
    await webhooks.save_config(db, url, ["call_finished"], False)
    await calls.save_call(db, record("400.0", T0 + 10))
    await hooks.tick()
    assert len(await webhooks.recent(db)) == 1


def test_the_back_off_grows_then_gives_up() -> None:
    waits = [rules.retry_delay(n) for n in range(1, rules.MAX_ATTEMPTS + 1)]
    assert waits[:3] == [30.0, 120.0, 480.0] and waits[-2] == rules.LONGEST_WAIT and waits[-1] is None


async def test_the_settings_page(tmp_path: Path) -> None:
    from web.webhooks_page import receiver_url

    assert receiver_url("https://mis.example.ru/hook?x=1") == "https://mis.example.ru/hook?x=1"
    for bad in ("ftp://x", "https://user:pw@x/", "javascript:alert(1)", "http://", "https://a b/", "x" * 600):
        assert receiver_url(bad) is None, bad
    async with settings_admin_panel(tmp_path) as (db, client):
        page = await client.get("/settings/webhooks")
        text = await page.text()
        assert page.status == 200 and "Журнал отправок" in text
        token = text.split('name="csrf_token" value="')[1].split('"')[0]
        bad = await client.post("/settings/webhooks", data={"csrf_token": token, "url": "ftp://mis", "enabled": "on"})
        assert bad.status == 400
        ok = await client.post("/settings/webhooks", data={"csrf_token": token, "url": "https://mis.example.ru/h",
                                                           "enabled": "on", "event": ["call_finished", "nope"]})
        assert ok.status == 200
        cfg = await webhooks.config(db)
        assert cfg["enabled"] and cfg["events"] == ["call_finished"] and cfg["secret"].startswith("whsec_")
        assert cfg["secret"] in await (await client.get("/settings/webhooks")).text()

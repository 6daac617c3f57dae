"""Website callback requests without Asterisk: the signed webhook (signature, timestamp, replay
across a restart, bearer token, idempotency, joining, hostile fields, clear 4xx errors), the
panel's «Обратные звонки» page and its hand-made request, and the storage's decisions before
an attempt (booked or talked since the request, a guardian's ward included)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import callbacks, patients, schedule, signatures, users
from crm.clock import SettableClock
from crm.demo import load_demo
from crm.rules import callback as cr
from pbx.app import SERVICES, Adapters, build_app
from tests.unit.panel_client import log_in, offline_settings

TZ = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=TZ).timestamp()
SECRET = "s3cret-of-the-site"


@pytest.fixture
async def env(tmp_path: Path):
    clock = SettableClock(NOW)
    app = build_app(offline_settings(tmp_path), clock=clock, run_escort=False, adapters=Adapters.offline())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = TestClient(server)
    db = app[SERVICES].db
    await load_demo(db, now=NOW, robot_patients=False)
    await callbacks.save_source(db, "napopravku", "НаПоправку", secret=SECRET)
    await callbacks.save_source(db, "site", "сайта клиники", token="tok-123")
    yield app, client, clock
    await client.close()
    await server.close()


def signed(body: dict | bytes, ts: float = NOW, secret: str = SECRET) -> dict:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    stamp = str(int(ts))
    return {"data": raw, "headers": {"Content-Type": "application/json", signatures.TIMESTAMP_HEADER: stamp,
                                     signatures.SIGNATURE_HEADER: signatures.sign(secret, stamp, raw)}}


REQ = {"source": "napopravku", "external_id": "np-1", "name": "Иванова Мария", "phone": "8 (903) 111-22-33",
       "doctor": "Кузнецова Ольга Викторовна", "service": "Чистка", "desired_time": "завтра утром",
       "comment": "после 10", "utm": {"utm_source": "napopravku", "utm_campaign": "winter"}}


async def test_a_signed_request_is_stored_once_with_its_job(env) -> None:
    app, client, _ = env
    r = await client.post("/api/v1/requests", **signed(REQ))
    assert r.status == 201, await r.text()
    first = await r.json()
    req = await callbacks.request(app[SERVICES].db, first["id"])
    assert req is not None and req["phone"] == "+79031112233" and req["source_name"] == "НаПоправку"
    assert json.loads(req["utm"]) == {"utm_source": "napopravku", "utm_campaign": "winter"}
    job = await app[SERVICES].db.fetchone("SELECT kind, state, due_ts FROM jobs WHERE job_key = ?",
                                          (f"callback:{first['id']}",))
    assert tuple(job) == ("callback", "pending", NOW)
    # the provider retries (signed anew): the same request, no second job
    r = await client.post("/api/v1/requests", **signed(REQ, NOW + 1))
    assert r.status == 200 and (await r.json())["id"] == first["id"]
    assert (await app[SERVICES].db.fetchone("SELECT COUNT(*) FROM jobs WHERE kind = 'callback'"))[0] == 1


async def test_replay_bad_signature_and_stale_timestamp_are_refused(env, tmp_path: Path) -> None:
    app, client, clock = env
    req = signed(REQ)
    assert (await client.post("/api/v1/requests", **req)).status == 201
    again = await client.post("/api/v1/requests", **req)
    assert again.status == 401 and "replayed" in await again.text()
    bad = signed(REQ, secret="wrong")
    assert (await client.post("/api/v1/requests", **bad)).status == 401
    stale = await client.post("/api/v1/requests", **signed(REQ | {"external_id": "np-2"}, NOW - 301))
    assert stale.status == 401 and "tolerance" in await stale.text()
    unsigned = await client.post("/api/v1/requests", json=REQ | {"external_id": "np-3"})
    assert unsigned.status == 401
    # the replay guard is the database's: a restarted server still refuses the same signature
    seen = await callbacks.remember_signature(app[SERVICES].db, req["headers"][signatures.SIGNATURE_HEADER],
                                              NOW + 10, 600)
    assert seen is False


async def test_token_source_and_unknown_or_disabled_sources(env) -> None:
    app, client, _ = env
    body = {"source": "site", "phone": "+7 916 000-00-01", "external_id": "a"}
    assert (await client.post("/api/v1/requests", json=body)).status == 401
    ok = await client.post("/api/v1/requests", json=body, headers={"Authorization": "Bearer tok-123"})
    assert ok.status == 201
    wrong = await client.post("/api/v1/requests", json=body | {"external_id": "b"},
                              headers={"Authorization": "Bearer tok-124"})
    assert wrong.status == 401
    assert (await client.post("/api/v1/requests", json=body | {"source": "nobody"})).status == 401
    await callbacks.save_source(app[SERVICES].db, "site", "сайта клиники", token="tok-123", enabled=False)
    off = await client.post("/api/v1/requests", json=body | {"external_id": "c"},
                            headers={"Authorization": "Bearer tok-123"})
    assert off.status == 403


@pytest.mark.parametrize(("change", "status", "says"), [
    ({"phone": "12"}, 422, "phone"),
    ({"phone": None}, 422, "phone"),
    # #32: an extension cannot be dialled; stored without it the robot would call the switchboard
    ({"phone": "+7 (999) 000-00-12 доб. 5"}, 422, "extension (5)"),
    ({"comment": "x" * 1001}, 422, "comment"),
    ({"doctor": ["a"]}, 422, "doctor"),
    ({"utm": "utm_source=x"}, 422, "utm"),
])
async def test_bad_fields_get_clear_errors(env, change: dict, status: int, says: str) -> None:
    _, client, _ = env
    r = await client.post("/api/v1/requests", **signed(REQ | change))
    assert r.status == status and says in (await r.json())["error"]


async def test_not_json_and_too_large(env) -> None:
    _, client, _ = env
    assert (await client.post("/api/v1/requests", **signed(b"{not json"))).status == 400
    assert (await client.post("/api/v1/requests", **signed(b"[1, 2]"))).status == 400
    big = await client.post("/api/v1/requests", data=b"{" + b" " * 70_000 + b"}",
                            headers={"Content-Type": "application/json"})
    assert big.status == 413


async def test_hostile_text_is_stored_inert_and_shown_escaped(env) -> None:
    app, client, _ = env
    evil = REQ | {"external_id": "evil", "name": "<script>alert(1)</script>\x00\x07", "comment": "=HYPERLINK(\"x\")"}
    r = await client.post("/api/v1/requests", **signed(evil))
    req = await callbacks.request(app[SERVICES].db, (await r.json())["id"])
    assert req is not None and req["patient_name"] == "<script>alert(1)</script>"  # control characters gone
    await users.create_user(app[SERVICES].db, "boss", "pw-boss-12", role="settings_admin")
    await log_in(client, "boss", "pw-boss-12")
    page = await (await client.get("/callbacks?day=2026-12-02")).text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


async def test_a_second_request_within_a_day_joins_the_open_one(env) -> None:
    app, client, clock = env
    first = await (await client.post("/api/v1/requests", **signed(REQ))).json()
    clock.advance(3600)
    r = await client.post("/api/v1/requests", **signed(REQ | {"external_id": "np-9"}, clock.now()))
    assert r.status == 200 and await r.json() == {"id": first["id"], "created": False, "joined": True}
    clock.advance(24 * 3600)  # more than a day after the first: a request of its own
    r = await client.post("/api/v1/requests", **signed(REQ | {"external_id": "np-10"}, clock.now()))
    assert r.status == 201


async def test_booked_or_talked_since_the_request(env) -> None:
    app, _, clock = env
    db = app[SERVICES].db
    intake = await callbacks.create_request(db, callbacks.NewRequest(phone="+79035550101", source_name="X"), NOW)
    req = await callbacks.request(db, intake.request_id)
    assert req is not None
    assert await callbacks.facts(db, req, True) == cr.RequestFacts(created_ts=NOW)
    # a ward of the guardian whose number made the request is booked after it
    child = await patients.add_patient(db, "Петров", "Коля", "")
    await patients.add_guardian(db, child, "Петрова Анна", "+79035550101")
    await schedule.book(db, patient_id=child, doctor_id=1, starts_at=datetime(2026, 12, 4, 10, tzinfo=TZ),
                        minutes=30, now=NOW - 60)
    assert not (await callbacks.facts(db, req, True)).booked_since  # booked before the request
    await schedule.book(db, patient_id=child, doctor_id=1, starts_at=datetime(2026, 12, 4, 11, tzinfo=TZ),
                        minutes=30, now=NOW + 60)
    assert (await callbacks.facts(db, req, True)).booked_since


async def test_the_panel_page_and_a_request_made_by_hand(env) -> None:
    app, client, _ = env
    await users.create_user(app[SERVICES].db, "anna", "pw-anna-12")
    token = await log_in(client, "anna", "pw-anna-12")
    r = await client.post("/callbacks/new", data={"csrf_token": token, "phone": "8 903 777 66 55",
                                                  "patient_name": "Смирнова Анна", "doctor": "", "service": "Имплант",
                                                  "desired": "", "comment": "звонила в чат"}, allow_redirects=False)
    assert r.status == 302, await r.text()
    rows = await callbacks.list_requests(app[SERVICES].db, NOW - 3600, NOW + 3600)
    assert [(x["phone"], x["source_name"], x["service"]) for x in rows] == [("+79037776655", "администратора", "Имплант")]
    page = await (await client.get("/callbacks?day=2026-12-02")).text()
    assert "Обратные звонки" in page and "Смирнова Анна" in page and "актуальная" in page
    bad = await client.post("/callbacks/new", data={"csrf_token": token, "phone": "abc"}, allow_redirects=False)
    assert bad.status == 400
    # closed by hand: no more calls about it
    rid = rows[0]["id"]
    r = await client.post(f"/callbacks/{rid}/close", data={"csrf_token": token}, allow_redirects=False)
    assert r.status == 302
    req = await callbacks.request(app[SERVICES].db, rid)
    assert req is not None and (req["state"], req["outcome"]) == ("closed", cr.CLOSED_CANCELLED)
    job = await app[SERVICES].db.fetchone("SELECT state FROM jobs WHERE job_key = ?", (f"callback:{rid}",))
    assert job["state"] == "done"


async def test_demo_request_goes_through_the_signed_webhook(tmp_path: Path) -> None:
    import argparse
    import asyncio
    import dataclasses
    import socket

    from pbx.cli.ops import cmd_demo_request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = offline_settings(tmp_path)
    settings = dataclasses.replace(base, web=dataclasses.replace(base.web, port=port))
    app = build_app(settings, run_escort=False, adapters=Adapters.offline())
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        await load_demo(app[SERVICES].db, robot_patients=False)  # the demo's source, with its secret
        args = argparse.Namespace(phone="+79031112233", name="Иванова", doctor="Кузнецова", service="Чистка",
                                  source="napopravku")
        assert await asyncio.to_thread(cmd_demo_request, settings, args) == 0
        rows = await app[SERVICES].db.fetchall("SELECT source_name, phone, service FROM callback_requests")
        assert [tuple(r) for r in rows] == [("НаПоправку", "+79031112233", "Чистка")]
    finally:
        await server.close()


async def test_the_callbacks_report_and_its_csv(env) -> None:
    app, client, clock = env
    db = app[SERVICES].db
    for i in range(3):
        await callbacks.create_request(db, callbacks.NewRequest(phone=f"+7903555000{i}", source_name="X"), NOW + i)
    first = (await callbacks.list_requests(db, NOW - 10, NOW + 10))[-1]
    await callbacks.close(db, None, first["id"], cr.CLOSED_CONTACTED, "", NOW + 300)
    await users.create_user(db, "boss", "pw-boss-12", role="director")
    await log_in(client, "boss", "pw-boss-12")
    page = await (await client.get("/reports?report=callbacks&since=2026-12-02&until=2026-12-02")).text()
    assert "Обратные звонки" in page and '<td class="contacted">1 (33,3 %)</td>' in page
    csv = await (await client.get("/reports.csv?report=callbacks&since=2026-12-02&until=2026-12-02")).text()
    assert "2026-12-02;3;1;33,3 %;0;0;0;0;2;0;5\r\n" in csv, csv


async def test_the_robot_rings_only_free_phones_and_waits_when_all_are_busy(env) -> None:
    app, _, clock = env
    svc = app[SERVICES].callbacks
    assert svc is not None
    busy: set[str] = {"101"}
    svc.busy_phones = lambda: busy
    svc.queue_phones = lambda q: {"101", "102"} if q == "reception-ringall" else set()
    s = cr.CallbackSettings()
    assert await svc._phones(s) == (["102"], True)
    busy.add("102")
    assert await svc._phones(s) == ([], False)
    # the job is put off by 30 s, not counted as an attempt
    db = app[SERVICES].db
    intake = await callbacks.create_request(db, callbacks.NewRequest(phone="+79035550202", source_name="X"), NOW)
    job = (await db.fetchall("SELECT * FROM jobs WHERE job_key = ?", (f"callback:{intake.request_id}",)))[0]
    await svc._job(dict(job) | {"subject_id": intake.request_id}, s, NOW)
    row = await db.fetchone("SELECT state, due_ts, attempts, reason FROM jobs WHERE id = ?", (job["id"],))
    assert tuple(row) == ("pending", NOW + cr.BUSY_WAIT, 0, "Все администраторы заняты")
    named = cr.CallbackSettings(clinic_target="103")
    assert await svc._phones(named) == (["103"], True)


async def test_the_settings_form_saves_hours_per_weekday(env) -> None:
    app, client, _ = env
    await users.create_user(app[SERVICES].db, "boss", "pw-boss-12", role="settings_admin")
    token = await log_in(client, "boss", "pw-boss-12")
    week = "08:00-20:00,08:00-20:00,08:00-20:00,08:00-20:00,08:00-20:00,10:00-16:00,-"
    r = await client.post("/callbacks/settings", data={"csrf_token": token, "enabled": "1", "clinic_target": "101",
                                                       "week": week, "retry_minutes": "7", "emails": "a@b.ru"},
                          allow_redirects=False)
    assert r.status == 302
    s = await callbacks.settings(app[SERVICES].db)
    assert (s.week, s.clinic_target, s.retry_minutes, s.emails, s.enabled) == (week, "101", 7, "a@b.ru", True)
    assert s.hours.of(7) is None and s.hours.of(6) is not None
    r = await client.post("/callbacks/sources", data={"csrf_token": token, "code": "prodoctorov",
                                                      "spoken_name": "ПроДокторов", "auth": "token", "enabled": "1"},
                          allow_redirects=False)
    src = await callbacks.source(app[SERVICES].db, "prodoctorov")
    assert r.status == 302 and src is not None and src["token"] and not src["secret"]
    bad = await client.post("/callbacks/sources", data={"csrf_token": token, "code": "a b", "spoken_name": "x"},
                            allow_redirects=False)
    assert bad.status == 400


async def test_a_body_sent_in_chunks_is_read_whole(env) -> None:
    app, client, _ = env
    raw = json.dumps(REQ | {"external_id": "chunked", "comment": "к" * 900}, ensure_ascii=False).encode()
    stamp = str(int(NOW))

    async def chunks():
        for i in range(0, len(raw), 100):
            yield raw[i:i + 100]

    r = await client.post("/api/v1/requests", data=chunks(), headers={
        "Content-Type": "application/json", signatures.TIMESTAMP_HEADER: stamp,
        signatures.SIGNATURE_HEADER: signatures.sign(SECRET, stamp, raw)})
    assert r.status == 201, await r.text()
    req = await callbacks.request(app[SERVICES].db, (await r.json())["id"])
    assert req is not None and req["comment"] == "к" * 900
    big = b"{" + b" " * 70_000 + b"}"

    async def big_chunks():
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    assert (await client.post("/api/v1/requests", data=big_chunks(),
                              headers={"Content-Type": "application/json"})).status == 413


async def test_each_branch_has_its_sources_settings_and_queue_of_jobs(env) -> None:
    app, client, clock = env
    db = app[SERVICES].db
    async with db.transaction() as tx:
        second = (await (await tx.execute("INSERT INTO branches (name) VALUES ('Филиал на Садовой') RETURNING id"))
                  .fetchone())[0]
    await callbacks.save_source(db, "sadovaya", "НаПоправку", token="tok-s", branch_id=second)
    await users.create_user(db, "boss", "pw-boss-12", role="settings_admin")
    token = await log_in(client, "boss", "pw-boss-12")
    # the second branch's own settings; the first keeps the clinic's
    r = await client.post("/callbacks/settings", data={"csrf_token": token, "branch": str(second), "enabled": "1",
                                                       "clinic_target": "103", "opens": "10:00", "closes": "18:00"},
                          allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == f"/callbacks?branch={second}"
    assert (await callbacks.settings(db, second)).clinic_target == "103"
    assert (await callbacks.settings(db, 1)).clinic_target == "queue"  # falls back to the clinic's
    bad = await client.post("/callbacks/settings", data={"csrf_token": token, "branch": "999"}, allow_redirects=False)
    assert bad.status == 400
    page = await (await client.get(f"/callbacks?branch={second}")).text()
    assert 'value="103"' in page and "Филиал на Садовой" in page
    # a request through the branch's source is the branch's, and only its claim takes it
    r = await client.post("/api/v1/requests", json={"source": "sadovaya", "phone": "+79035551111", "external_id": "s1"},
                          headers={"Authorization": "Bearer tok-s"})
    rid = (await r.json())["id"]
    assert (await callbacks.request(db, rid))["branch_id"] == second  # type: ignore[index]
    assert await callbacks.due_branches(db, NOW) == [second]
    assert await callbacks.claim(db, NOW, 1, 5) == []
    assert [j["subject_id"] for j in await callbacks.claim(db, NOW, second, 5)] == [rid]


class FakeRunner:
    """Stands for the ARI flow runner: the call ends with a set outcome at once."""

    def __init__(self, outcome: str, talk: float = 0.0) -> None:
        self.outcome, self.talk = outcome, talk

    async def run(self, flow, on_report=None):
        from pbx.robots import flow as f

        if on_report is not None:
            await on_report("answered:101")
        return f.Outcome(self.outcome, "1", None, "", self.talk)


async def attempt_with(app, outcome: str, *, close_first: bool = False) -> tuple[dict, dict]:
    svc = app[SERVICES].callbacks
    db = app[SERVICES].db
    intake = await callbacks.create_request(db, callbacks.NewRequest(phone="+79035557777", source_name="НаПоправку"),
                                            NOW)
    job = (await callbacks.claim(db, NOW, None, 1))[0]
    await callbacks.start_attempt(db, job, 1, "cb-test-1", NOW)
    if close_first:
        await callbacks.close(db, None, intake.request_id, cr.CLOSED_CANCELLED, "", NOW)
    svc.runner = FakeRunner(outcome)
    flow = type("F", (), {"base": "cb-test-1"})()
    await svc._call(job, flow, cr.CallbackSettings(sms_after=1))
    req = await callbacks.request(db, intake.request_id)
    row = await db.fetchone("SELECT state, due_ts FROM jobs WHERE id = ?", (job["id"],))
    return req, dict(row)  # type: ignore[return-value]


async def test_after_a_busy_patient_the_sms_and_the_retry(env) -> None:
    app, _, _ = env
    req, job = await attempt_with(app, cr.PATIENT_BUSY)
    assert req["state"] == "open" and req["sms_sent"] == 1
    assert job == {"state": "pending", "due_ts": NOW + 300}
    sms = await app[SERVICES].db.fetchall("SELECT phone, body FROM outbox WHERE scenario = 'callback'")
    assert [tuple(r) for r in sms] == [("+79035557777", cr.sms_text("НаПоправку", "+7 495 111-00-01"))]


async def test_a_request_closed_during_the_call_is_not_retried(env) -> None:
    app, _, _ = env
    req, job = await attempt_with(app, cr.PATIENT_BUSY, close_first=True)
    assert (req["state"], req["outcome"], req["sms_sent"]) == ("closed", cr.CLOSED_CANCELLED, 0)
    assert job["state"] == "done"
    assert await app[SERVICES].db.fetchall("SELECT 1 FROM outbox WHERE scenario = 'callback'") == []


async def test_a_chain_box_calls_back_its_own_branches_from_its_own_phones(env) -> None:
    """In a chain (``[asterisk] branches``) a box's robot takes its branches' requests and the
    clinic's (no branch), never another branch's, and rings only its branches' desk phones."""
    import asyncio
    import dataclasses

    app, _, _ = env
    db, svc = app[SERVICES].db, app[SERVICES].callbacks
    async with db.transaction() as tx:
        second = (await (await tx.execute("INSERT INTO branches (name) VALUES ('Филиал на Садовой') RETURNING id"))
                  .fetchone())[0]
        await tx.execute("INSERT INTO desk_phones (extension, branch_id, label) VALUES ('201', ?, 'Садовая')", (second,))
    await callbacks.save_source(db, "sadovaya", "НаПоправку", token="tok-s", branch_id=second)
    for branch in (1, second):
        await callbacks.save_settings(db, dataclasses.replace(cr.CallbackSettings(), enabled=True), branch)
    await callbacks.save_settings(db, dataclasses.replace(cr.CallbackSettings(), enabled=True), None)
    ids = {}
    for name, source, branch in (("main", "НаПоправку", 1), ("sadovaya", "НаПоправку", second), ("clinic", "X", None)):
        intake = await callbacks.create_request(
            db, callbacks.NewRequest(phone=f"+7903555{len(ids):04d}", source_name=source, branch_id=branch), NOW)
        ids[name] = intake.request_id
    assert await svc._all_phones() == ["101", "102", "103", "201"]  # one box: every phone
    svc.settings = dataclasses.replace(svc.settings, asterisk=dataclasses.replace(svc.settings.asterisk,
                                                                                  branches=(second,)))
    assert await svc._all_phones() == ["201"]
    taken: list[int] = []

    async def job(j, s, now, branch=None) -> None:
        taken.append(j["subject_id"])

    svc._job = job
    svc.runner = type("R", (), {"ari": type("A", (), {"connected": asyncio.Event()})()})()
    svc.runner.ari.connected.set()
    svc.queue_phones = lambda q: set()
    await svc.work()
    assert sorted(taken) == sorted([ids["sadovaya"], ids["clinic"]])


async def test_the_audit_s_unauthenticated_500s_are_clear_refusals(env) -> None:
    """#30 (Low): deeply nested JSON on the webhook, a "nan" timestamp, and /e/ links with
    Unicode digits or an id beyond 64 bits were a 500 or passed the 5-minute check."""
    app, client, _ = env
    r = await client.post("/api/v1/requests", data=b"[" * 30_000 + b"]" * 30_000,
                          headers={"Content-Type": "application/json"})
    assert r.status == 400 and "JSON expected" in await r.text()
    raw = json.dumps(REQ).encode()
    nan = {"Content-Type": "application/json", signatures.TIMESTAMP_HEADER: "nan",
           signatures.SIGNATURE_HEADER: signatures.sign(SECRET, "nan", raw)}
    r = await client.post("/api/v1/requests", data=raw, headers=nan)
    assert r.status == 401 and "tolerance" in await r.text()
    assert signatures.check(SECRET, "inf", signatures.sign(SECRET, "inf", raw), raw, NOW) is not None
    for token in ("١٢٣-abc", "99999999999999999999999-abc", "12345678901234567890-x"):
        assert (await client.get(f"/e/{token}")).status == 404, token
        assert (await client.post(f"/e/{token}", data={"choice": "1"})).status in (403, 404), token

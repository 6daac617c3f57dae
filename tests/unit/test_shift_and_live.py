"""Shift phone binding in the panel and the live card stream (SSE, bounded queues)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import types
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import call_listing, patients, users
from crm.demo import load_demo
from crm.rules.call_records import LiveCall, LiveUpdate, QueueWaiting
from pbx.app import SERVICES, build_app
from pbx.settings import AsteriskSettings, Settings, with_generated_secrets
from web.live import LIVE_HUB, QUEUE_SIZE


@pytest.fixture
async def app(tmp_path: Path, storage_setting: dict):
    asterisk = AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0)
    application = build_app(with_generated_secrets(Settings(state_dir=tmp_path, asterisk=asterisk, **storage_setting)))
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    db = application[SERVICES].db
    await load_demo(db)
    await users.create_user(db, "anna", "pw-anna", full_name="Анна Админова")
    await users.create_user(db, "olga", "pw-olga", full_name="Ольга Регистратова")
    yield application, server
    await server.close()


async def login(server: TestServer, login: str, password: str) -> TestClient:
    client = TestClient(server)
    await client.start_server()
    page = await (await client.get("/login")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    await client.post("/login", data={"login": login, "password": password, "csrf_token": token})
    return client


async def choose(client: TestClient, extension: str) -> int:
    page = await (await client.get("/shift")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = await client.post("/shift", data={"extension": extension, "csrf_token": token},
                             allow_redirects=False)
    return resp.status


def live_call(status: str, caller: str = "79161234567", linkedid: str = "1.0") -> LiveUpdate:
    return LiveUpdate(LiveCall(linkedid, "incoming", "101", status, caller, "", "74951110001",
                               "reception-ringall", "patient", "1", 100.0))


async def test_taking_a_colleagues_phone_tells_the_colleague(app) -> None:
    application, server = app
    anna = await login(server, "anna", "pw-anna")
    olga = await login(server, "olga", "pw-olga")
    assert await choose(anna, "101") == 302
    anna_id = (await application[SERVICES].db.fetchone("SELECT id FROM users WHERE login = 'anna'"))[0]
    anna_stream = application[LIVE_HUB].subscribe(anna_id, "101")  # Anna's open tab
    page = await (await olga.get("/shift")).text()
    assert "занят: Анна Админова" in page
    assert await choose(olga, "101") == 302
    notice = anna_stream.queue.get_nowait()
    assert notice["type"] == "notice" and "Ольга Регистратова" in notice["text"]
    assert "Телефон: 101" in await (await olga.get("/")).text()
    assert await choose(olga, "999") == 400  # not a clinic phone
    await anna.close()
    await olga.close()


async def test_sse_stream_sends_snapshot_then_cards(app) -> None:
    application, server = app
    client = await login(server, "anna", "pw-anna")
    await choose(client, "101")
    resp = await client.get("/live")
    assert resp.headers["Content-Type"].startswith("text/event-stream")

    async def next_message() -> dict:
        while True:
            line = await asyncio.wait_for(resp.content.readline(), 5)
            if line.startswith(b"data: "):
                return json.loads(line[6:])

    snap = await next_message()
    assert snap["type"] == "snapshot" and snap["extension"] == "101" and snap["cards"] == []
    hub = application[LIVE_HUB]
    hub.on_change(live_call("ringing"))
    await hub.drain()
    card = (await next_message())["card"]
    assert card["status"] == "ringing" and card["patients"][0]["full_name"] == "Петрова Анна Сергеевна"
    assert card["ad_channel"] == "Сайт" and card["script"].startswith("Поздоровайтесь")
    hub.on_change(QueueWaiting("reception-ringall", 2, 101.0))
    assert (await next_message()) == {"type": "waiting", "queue": "reception-ringall", "count": 2}
    resp.close()
    await client.close()


async def test_stopping_the_server_ends_open_streams_at_once(app) -> None:
    application, server = app
    client = await login(server, "anna", "pw-anna")
    resp = await client.get("/live")
    assert (await asyncio.wait_for(resp.content.readline(), 5)).startswith(b"data: ")
    started = asyncio.get_running_loop().time()
    await application.shutdown()  # what aiohttp runs on SIGTERM / Ctrl-C
    assert await asyncio.wait_for(resp.content.read(), 5) == b"\n"  # the end, not a keep-alive 15 s later
    assert asyncio.get_running_loop().time() - started < 2
    assert not application[LIVE_HUB].subscribers
    resp.close()
    await client.close()


async def test_a_slow_tab_gets_a_resync_not_a_stall(app) -> None:
    application, _ = app
    hub = application[LIVE_HUB]
    slow = hub.subscribe(1, "101")
    for i in range(QUEUE_SIZE * 3):  # the publisher never blocks
        hub.on_change(live_call("ringing", linkedid=f"{i}.0"))
    await hub.drain()
    assert slow.queue.qsize() == 1 and slow.queue.get_nowait()["type"] == "resync"


async def test_hostile_patient_name_is_data_not_markup(app) -> None:
    application, _ = app
    db = application[SERVICES].db
    await patients.add_patient(db, "<img src=x onerror=alert(1)>", "Зло", phone_numbers=("+79990001111",))
    card = await application[LIVE_HUB].card(live_call("ringing", caller="79990001111").call)
    assert card["patients"][0]["full_name"].startswith("<img")  # raw in JSON;
    js = (Path(__file__).parents[2] / "web" / "static" / "cards.js").read_text()
    assert "innerHTML" not in js  # the page only ever sets textContent


async def test_the_shift_question_comes_at_the_clinic_s_midnight(tmp_path: Path) -> None:
    """«первая страница дня» is the clinic's day: in Moscow (UTC+3) the question comes again at
    00:00 local, not at 03:00 when the UTC date turns."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from crm.clock import SettableClock

    moscow = ZoneInfo("Europe/Moscow")
    clock = SettableClock(datetime(2026, 11, 24, 23, 30, tzinfo=moscow).timestamp())
    asterisk = AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0)
    application = build_app(with_generated_secrets(Settings(state_dir=tmp_path, asterisk=asterisk)), clock=clock)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    try:
        await users.create_user(application[SERVICES].db, "anna", "pw-anna")
        anna = await login(server, "anna", "pw-anna")
        assert await choose(anna, "none") == 302
        assert (await anna.get("/patients", allow_redirects=False)).status == 200
        clock.set(datetime(2026, 11, 25, 0, 10, tzinfo=moscow).timestamp())  # still the 24th in UTC
        r = await anna.get("/patients", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/shift"
        await anna.session.close()
    finally:
        await server.close()


class QueueStatusAmi:
    """What Asterisk answers at a resync: no channels, two queues with their members."""

    async def action(self, request: dict, timeout: float = 10) -> list[dict]:
        if request["Action"] == "CoreShowChannels":
            return [{"Event": "CoreShowChannelsComplete"}]
        return [
            {"Event": "QueueParams", "Queue": "reception-ringall", "Calls": "3"},
            {"Event": "QueueMember", "Queue": "reception-ringall", "Location": "PJSIP/101", "StateInterface": "PJSIP/101"},
            {"Event": "QueueMember", "Queue": "reception-ringall", "Location": "PJSIP/102", "StateInterface": "PJSIP/102"},
            {"Event": "QueueParams", "Queue": "surgery", "Calls": "2"},
            {"Event": "QueueMember", "Queue": "surgery", "Location": "PJSIP/103", "StateInterface": "PJSIP/103"},
            {"Event": "QueueStatusComplete"},
        ]


async def test_more_on_the_line_counts_only_this_phones_queues(app) -> None:
    """Seed 000: «Ещё N на линии» — the callers waiting in the queues this phone serves, not
    in every queue of the clinic."""
    application, _ = app
    services = application[SERVICES]
    await services.calls.resync(QueueStatusAmi())
    assert services.calls.waiting == {"reception-ringall": 3, "surgery": 2}
    hub = application[LIVE_HUB]
    assert hub.snapshot("101")["queues"] == ["reception-ringall"]
    assert hub.snapshot("103")["queues"] == ["surgery"]
    assert hub.snapshot("104")["queues"] == []  # unknown: the panel counts every queue


async def test_the_incoming_calls_button_opens_the_ringing_calls_comment_window(app) -> None:
    """Seed 001: «Важно ... при поступлении звонка в клинику нажимали на кнопку «Входящие
    звонки»» — it opens the comment window of the call at my phone."""
    application, server = app
    anna = await login(server, "anna", "pw-anna")
    assert await choose(anna, "101") == 302
    r = await anna.get("/incoming", allow_redirects=False)
    assert r.headers["Location"] == "/?no_call=1"
    assert "Сейчас на вашем телефоне нет звонка" in await (await anna.get("/?no_call=1")).text()
    calls = application[SERVICES].calls
    calls._apply([live_call("ringing", linkedid="5.0")])
    r = await anna.get("/incoming", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/comment?call=5.0"
    page = await (await anna.get(r.headers["Location"])).text()
    assert "Добавление комментария к разговору" in page
    await anna.close()


async def meta_csrf(client: TestClient) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', await (await client.get("/")).text()).group(1)


async def test_click_to_call_is_refused_while_already_talking(app) -> None:
    """Seed 000: no second call from a phone that is talking (implemented earlier, tested now)."""
    application, server = app
    anna = await login(server, "anna", "pw-anna")
    assert await choose(anna, "101") == 302
    services = application[SERVICES]
    services.ami = types.SimpleNamespace(connected=True)  # the refusal comes before any originate
    services.calls._apply([live_call("talking", linkedid="6.0")])
    r = await anna.post("/dial", json={"number": "+79031112233"}, headers={"X-CSRF-Token": await meta_csrf(anna)})
    assert r.status == 409 and "уже разговариваете" in (await r.json())["error"]
    services.ami = None
    await anna.close()


async def test_a_single_clinic_phone_warns_at_the_shift_question(app) -> None:
    """Seed 000: with one clinic phone only one administrator per shift can use telephony."""
    application, server = app
    anna = await login(server, "anna", "pw-anna")
    assert "В клинике один телефон" not in await (await anna.get("/shift")).text()
    async with application[SERVICES].db.transaction() as tx:
        await tx.execute("DELETE FROM desk_phones WHERE extension <> '101'")
    assert "В клинике один телефон" in await (await anna.get("/shift")).text()
    await anna.close()


async def test_a_booking_opened_during_a_call_and_finished_after_it_converts_it(app) -> None:
    """Seed 001: a booking panel opened while talking carries the call even when it is saved
    after the hang-up."""
    from crm import calls, schedule
    from crm.rules.call_records import CallRecord, LegRecord

    application, server = app
    anna = await login(server, "anna", "pw-anna")
    assert await choose(anna, "101") == 302
    services = application[SERVICES]
    services.calls._apply([live_call("talking", linkedid="8.0")])
    # next Monday: today's slots may all be past (the test runs at any hour)
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    monday = today + timedelta(days=7 - today.weekday())
    form = await (await anna.get(f"/booking?patient=1&doctor=1&date={monday.isoformat()}")).text()
    assert 'name="call" value="8.0"' in form
    slot = re.search(r'name="slot" value="([^"]+)"', form).group(1)
    services.calls._apply([live_call("ended", linkedid="8.0")])  # the patient hung up
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    r = await anna.post("/booking", data={"csrf_token": token, "patient": "1", "doctor": "1", "call": "8.0",
                                          "slot": slot}, allow_redirects=False)
    assert r.status == 302
    booked = [a for a in await schedule.patient_appointments(services.db, 1) if a["call_linkedid"] == "8.0"]
    assert len(booked) == 1 and booked[0]["starts_at"].startswith(slot[:10])
    t0 = time.time() - 60
    leg = LegRecord("101", "8.1", "answered", t0, t0 + 2, t0 + 50, False)
    await calls.save_call(services.db, CallRecord("8.0", "incoming", "incoming", "74951110001", "79161234567",
                                                  "74951110001", "reception-ringall", (leg,), "101", t0, t0 + 2,
                                                  t0 + 50, 2.0, 48.0, "caller", ""))
    assert (await call_listing.get_call_by_linkedid(services.db, "8.0"))["converted"]
    await anna.close()


async def test_a_booking_opened_before_a_call_and_saved_during_it_converts_it(app) -> None:
    """Seed 000: «During the call, I scheduled an appointment through a free slot in the schedule
    (the current call will be associated with the completed recording)» — also when the schedule
    was opened before the phone rang. A booking saved with no call going on is tied to none."""
    from crm import schedule

    application, server = app
    anna = await login(server, "anna", "pw-anna")
    assert await choose(anna, "101") == 302
    services = application[SERVICES]
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    monday = today + timedelta(days=7 - today.weekday())
    form = await (await anna.get(f"/booking?patient=1&doctor=1&date={monday.isoformat()}")).text()
    assert 'name="call" value=""' in form or 'name="call"' not in form  # no call yet
    slots = re.findall(r'name="slot" value="([^"]+)"', form)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    r = await anna.post("/booking", data={"csrf_token": token, "patient": "1", "doctor": "1", "slot": slots[0]},
                        allow_redirects=False)
    assert r.status == 302
    services.calls._apply([live_call("talking", linkedid="9.0")])  # the phone rings, Анна talks
    r = await anna.post("/booking", data={"csrf_token": token, "patient": "1", "doctor": "1", "slot": slots[1]},
                        allow_redirects=False)
    assert r.status == 302
    ties = {a["starts_at"][:16]: a["call_linkedid"] for a in await schedule.patient_appointments(services.db, 1)}
    assert ties[slots[0][:16]] is None and ties[slots[1][:16]] == "9.0"
    await anna.close()


async def test_the_ami_consumer_never_waits_on_the_crm() -> None:
    """#28: the live card is built off the AMI consumer's path: ``on_change`` only queues, the
    hub's task does the lookups (here a CRM that answers only when let), in order."""
    from web.live import LiveHub

    class SlowCrm:
        def __init__(self) -> None:
            self.answer = asyncio.Event()
            self.reads = 0

        def query_now(self, *_: object) -> list:
            raise AssertionError("an inline CRM read on the event path")

        async def read(self, _fn: object) -> tuple[dict, None]:  # the reading thread's hop, held until the test lets it go
            self.reads += 1
            await self.answer.wait()
            return {"linkedid": str(self.reads), "status": "ringing"}, None

    crm = SlowCrm()
    hub = LiveHub(crm)  # type: ignore[arg-type]
    tab = hub.subscribe(1, "101")
    publisher = asyncio.get_running_loop().create_task(hub.run())
    for i in range(3):
        hub.on_change(live_call("ringing", linkedid=f"{i}.0"))  # returns at once, the CRM still silent
    assert hub.changes.qsize() + crm.reads == 3 and tab.queue.empty()
    crm.answer.set()
    await asyncio.wait_for(hub.drain(), 5)
    assert [tab.queue.get_nowait()["card"]["linkedid"] for _ in range(3)] == ["1", "2", "3"]  # in order
    publisher.cancel()

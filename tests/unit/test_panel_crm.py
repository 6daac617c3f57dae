"""The panel's CRM side: schedule and booking, conversion of calls, the patient context block,
comments, tags, settings, roles, click-to-call refusals and call distribution."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import (
    call_listing,
    calls,
    clinic_settings,
    comments,
    context,
    directory,
    distribution,
    patients,
    schedule,
    tags,
    users,
)
from crm.clock import SettableClock
from crm.demo import load_demo
from crm.rules import windows
from crm.rules.call_records import CallRecord, LegRecord, LiveCall
from pbx.app import SERVICES, build_app
from pbx.settings import AsteriskSettings, Settings, with_generated_secrets
from web.live import LIVE_HUB

TZ = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 23, 11, 0, tzinfo=TZ).timestamp()  # a Monday, 11:00 in Moscow
PETROVA, IVANOV, KID = 1, 2, 3
OPEN_CLIENTS: list[TestClient] = []


def answered_call(lid: str, t0: float, caller: str, talk: float = 120.0, answered: bool = True) -> CallRecord:
    leg = LegRecord("101", lid + ".1", "answered" if answered else "no_answer", t0,
                    t0 + 5 if answered else None, t0 + 5 + talk, not answered)
    return CallRecord(lid, "incoming", "incoming" if answered else "missed", "74951110001", caller,
                      "74951110001", "", (leg,), "101" if answered else "", t0,
                      t0 + 5 if answered else None, t0 + 5 + talk, 5.0, talk if answered else 0.0,
                      "caller", "")


@pytest.fixture
async def app(tmp_path: Path, storage_setting: dict):
    asterisk = AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0)
    settings = with_generated_secrets(Settings(state_dir=tmp_path, asterisk=asterisk, **storage_setting))
    clock = SettableClock(NOW)
    application = build_app(settings, clock=clock)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    db = application[SERVICES].db
    await load_demo(db, now=NOW)
    await users.create_user(db, "admin", "pw-admin-1")
    await users.create_user(db, "boss", "pw-boss-12", role="settings_admin")
    async with db.transaction() as tx:
        await tx.execute("UPDATE users SET history_access = 'edit'")
    yield application, server, clock
    while OPEN_CLIENTS:
        await OPEN_CLIENTS.pop().close()
    await server.close()


async def login(server: TestServer, name: str, password: str, phone: str = "none") -> TestClient:
    c = TestClient(server)
    await c.start_server()
    OPEN_CLIENTS.append(c)
    token = re.search(r'name="csrf_token" value="([^"]+)"', await (await c.get("/login")).text()).group(1)
    await c.post("/login", data={"login": name, "password": password, "csrf_token": token})
    await c.post("/shift", data={"extension": phone, "csrf_token": await csrf(c)})
    return c


async def csrf(c: TestClient, path: str = "/shift") -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', await (await c.get(path)).text()).group(1)


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    d = date(2026, 11, 24)
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=TZ)


# --- schedule ---------------------------------------------------------------------------

async def test_slots_booking_and_clashes(app) -> None:
    application, _, _ = app
    db = application[SERVICES].db
    slots = await schedule.day_slots(db, 1, date(2026, 11, 24), TZ)
    assert len(slots) == 22 and slots[0].starts_at.hour == 9 and slots[-1].starts_at.hour == 19
    assert await schedule.day_slots(db, 1, date(2026, 11, 29), TZ) == []  # Sunday off
    # two administrators take the same slot at once: exactly one wins
    results = await asyncio.gather(
        *(schedule.book(db, patient_id=pid, doctor_id=1, starts_at=tomorrow_at(10), minutes=30, now=NOW)
          for pid in (PETROVA, IVANOV)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, int) for r in results) == 1
    assert sum(isinstance(r, schedule.BookingError) for r in results) == 1
    with pytest.raises(schedule.BookingError, match="занято"):
        await schedule.book(db, patient_id=KID, doctor_id=1, starts_at=tomorrow_at(10, 15), minutes=30, now=NOW)
    with pytest.raises(schedule.BookingError, match="прошло"):
        await schedule.book(db, patient_id=KID, doctor_id=1,
                            starts_at=datetime(2026, 11, 23, 9, 0, tzinfo=TZ), minutes=30, now=NOW)
    booked = next(r for r in results if isinstance(r, int))
    await schedule.set_status(db, booked, "cancelled")  # a cancelled slot is free again
    again = await schedule.book(db, patient_id=KID, doctor_id=1, starts_at=tomorrow_at(10), minutes=30, now=NOW)
    slot = next(s for s in await schedule.day_slots(db, 1, date(2026, 11, 24), TZ) if s.starts_at.hour == 10
                and s.starts_at.minute == 0)
    assert slot.appointment_id == again
    with pytest.raises(ValueError):
        await schedule.set_status(db, again, "maybe")


async def test_context_block(app) -> None:
    application, _, _ = app
    db = application[SERVICES].db
    ctx = await context.context(db, PETROVA, today=date(2026, 11, 23), now=NOW)
    assert ctx["age"] == 41 and not ctx["child"]
    assert ctx["balance"] == -1500 and ctx["treatment_sum"] == 4500 and ctx["insurance_sum"] == 3200
    assert ctx["family_sum"] == 4500 + 3200 + 25000  # Петрова and Иванов are one family
    assert ctx["policies"][0]["number"] == "ДМС-0042-7781"
    assert ctx["completed_share"] == 67  # two completed of three past (one no-show)
    assert ctx["last_visit"] and ctx["future"] == [] and len(ctx["tasks"]) == 1
    kid = await context.context(db, KID, today=date(2026, 11, 23), now=NOW)
    assert kid["child"] and kid["guardians"][0]["full_name"] == "Смирнова Елена Ивановна"
    assert kid["guardians"][0]["phones"] == "+79265554433"
    assert kid["completed_share"] is None and kid["family_sum"] is None


# --- conversion ---------------------------------------------------------------------------

async def test_conversion_rules(app) -> None:
    application, server, _ = app
    db = application[SERVICES].db
    t0 = NOW - 3600  # 10:00, talk until 10:02:05
    await calls.save_call(db, answered_call("500.1", t0, "79161234567"))  # Петрова
    await calls.save_call(db, answered_call("500.2", t0, "79031112233"))  # Иванов
    await calls.save_call(db, answered_call("500.3", t0 - 60, "79031112233", answered=False))
    await calls.save_call(db, answered_call("500.4", t0, "79990001122"))  # nobody
    # Петрова booked 29 min after her call ended -> converted; Иванов 31 min after -> not
    end = t0 + 125
    await schedule.book(db, patient_id=PETROVA, doctor_id=1, starts_at=tomorrow_at(12), minutes=30,
                        now=end + 29 * 60)
    await schedule.book(db, patient_id=IVANOV, doctor_id=2, starts_at=tomorrow_at(12), minutes=30,
                        now=end + 31 * 60)
    # the unknown caller's card booked a brand-new patient, with the call attached
    from crm import patients
    new = await patients.add_patient(db, "Новикова", "Ольга", phone_numbers=("+79990001122",))
    await schedule.book(db, patient_id=new, doctor_id=1, starts_at=tomorrow_at(13), minutes=30,
                        now=end + 3 * 3600, call_linkedid="500.4")
    # seed 000 by default: only the booking tied to the call (its card, or a panel opened during it)
    rows = {c["linkedid"]: c for c in await call_listing.list_calls(db, call_listing.CallFilter())}
    assert [lid for lid in sorted(rows) if rows[lid]["converted"]] == ["500.4"]
    yes = {c["linkedid"] for c in await call_listing.list_calls(db, call_listing.CallFilter(converted=True))}
    assert yes == {"500.4"}
    # the clinic's wider setting (the settings page): any booking of the caller's patient within 30 minutes too
    boss = await login(server, "boss", "pw-boss-12")
    assert 'name="nearby" value="1" >' in await (await boss.get("/settings")).text()
    r = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "conversion", "nearby": "1"},
                        allow_redirects=False)
    assert r.status == 302 and await clinic_settings.get(db, windows.CONVERSION_NEARBY) is True
    assert 'name="nearby" value="1" checked>' in await (await boss.get("/settings")).text()
    rows = {c["linkedid"]: c for c in await call_listing.list_calls(db, call_listing.CallFilter())}
    assert rows["500.1"]["converted"] and not rows["500.2"]["converted"]
    assert not rows["500.3"]["converted"]  # a missed call is never converted by the window
    assert rows["500.4"]["converted"]
    yes = {c["linkedid"] for c in await call_listing.list_calls(db, call_listing.CallFilter(converted=True))}
    assert yes == {"500.1", "500.4"}
    # "had an appointment at that moment": a call after the booking, before the visit
    await calls.save_call(db, answered_call("500.5", end + 2 * 3600, "79161234567"))
    later = await call_listing.get_call_by_linkedid(db, "500.5")
    assert later["had_appointment"] and not rows["500.1"]["had_appointment"]


# --- comments and tags --------------------------------------------------------------------

async def test_comments_and_manual_call(app) -> None:
    application, _, _ = app
    db = application[SERVICES].db
    await calls.save_call(db, answered_call("600.1", NOW - 600, "79161234567"))
    topic = (await comments.topics(db))[0]["id"]
    with pytest.raises(comments.CommentError, match="тему"):
        await comments.save_comment(db, "600.1", caller_type="wants_booking", topic_id=None,
                                    patient_id=PETROVA, text="", user_id=None)
    with pytest.raises(comments.CommentError):
        await comments.save_comment(db, "600.1", caller_type="hacker", topic_id=None,
                                    patient_id=None, text="", user_id=None)
    # seed 001: both «Кто, тип» and «Тема разговора» are required, whoever called
    for kind in comments.CALLER_TYPES:
        with pytest.raises(comments.CommentError, match="тему"):
            await comments.save_comment(db, "600.1", caller_type=kind, topic_id=None,
                                        patient_id=None, text="", user_id=None)
    await comments.save_comment(db, "600.1", caller_type="wants_booking", topic_id=topic,
                                patient_id=PETROVA, text="Хочет имплант", user_id=None)
    call = await call_listing.get_call_by_linkedid(db, "600.1")
    assert call["comment"]["text"] == "Хочет имплант"
    assert comments.default_caller_type("employee", False) == "employee"
    assert comments.default_caller_type("contractor", False) == "other"
    assert comments.default_caller_type("patient", True) == "booked"
    lid, _ = await comments.add_manual_call(db, direction="outgoing", phone="8 (916) 123-45-67",
                                         started=datetime(2026, 11, 23, 9, 30, tzinfo=TZ), minutes=3,
                                         user_id=None)
    manual = await call_listing.get_call_by_linkedid(db, lid)
    assert manual["source"] == "manual" and manual["patients"][0]["id"] == PETROVA
    assert manual["talk_seconds"] == 180
    with pytest.raises(comments.CommentError):
        await comments.add_manual_call(db, direction="outgoing", phone="abc", started=datetime.now(TZ),
                                       minutes=1, user_id=None)


async def test_tags_rules(app) -> None:
    application, _, _ = app
    db = application[SERVICES].db
    assert not await tags.should_prompt(db, "700.1", converted=False)  # disabled by default
    await clinic_settings.put(db, "tags_enabled", True)
    assert await tags.should_prompt(db, "700.1", converted=False)
    assert not await tags.should_prompt(db, "700.1", converted=True)  # mode: only without booking
    await clinic_settings.put(db, "tags_mode", "always")
    assert await tags.should_prompt(db, "700.1", converted=True)
    groups = await tags.groups(db)
    why = groups[0]
    with pytest.raises(tags.TagError, match="хотя бы одну"):
        await tags.set_tags(db, "700.1", [], "  ", None)
    await tags.set_tags(db, "700.1", [why["tags"][0]["id"]], "Спросил про рассрочку", None)
    with pytest.raises(tags.TagError, match="уже установлены"):
        await tags.set_tags(db, "700.1", [why["tags"][1]["id"]], "", None)
    assert not await tags.should_prompt(db, "700.1", converted=False)
    await tags.rename_group(db, why["id"], "Причины")
    await tags.delete_group(db, why["id"])
    assert [g["name"] for g in await tags.groups(db)] == ["Направление"]
    assert [t["label"] for t in await tags.call_tags(db, "700.1")] == ["Не подошло время", "Спросил про рассрочку"]
    # shown and closed unsaved: the history shows a dash
    await calls.save_call(db, answered_call("700.2", NOW - 300, "79161234567"))
    await tags.mark_prompted(db, "700.2", None)
    await tags.dismiss(db, "700.2", None)
    assert (await call_listing.get_call_by_linkedid(db, "700.2"))["tags_skipped"]


# --- the web pages --------------------------------------------------------------------------

async def test_the_nearest_free_time_when_a_day_has_none(app) -> None:
    application, server, _ = app
    db = application[SERVICES].db
    nearest = await schedule.next_free_slot(db, 1, date(2026, 11, 28), TZ, NOW)  # Saturday -> Sunday off
    assert nearest is not None and nearest.starts_at == datetime(2026, 11, 30, 9, 0, tzinfo=TZ)
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get("/booking?doctor=1&date=2026-11-29&patient=1")).text()
    assert "Свободного времени нет" in page and "Ближайшее свободное время: <a" in page
    assert "/booking?doctor=1&amp;date=2026-11-30&amp;patient=1" in page and "30.11.2026 09:00" in page
    assert "Ближайшее" not in await (await c.get("/booking?doctor=1&date=2026-11-30&patient=1")).text()


async def test_book_from_a_call_converts_it(app) -> None:
    application, server, _ = app
    db = application[SERVICES].db
    await calls.save_call(db, answered_call("800.1", NOW - 7200, "79990005566"))  # unknown, 2 h ago
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get("/booking?call=800.1&phone=%2B79990005566&doctor=2&date=2026-11-24")).text()
    assert "Новый пациент" in page and 'value="2026-11-24T09:00"' in page
    token = await csrf(c)
    form = {"csrf_token": token, "call": "800.1", "doctor": "2", "slot": "2026-11-24T09:00",
            "last_name": "<img src=x onerror=alert(1)>", "first_name": "Пётр", "phone": "+79990005566"}
    resp = await c.post("/booking", data=form, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/patients/")
    card = await (await c.get(resp.headers["Location"])).text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in card and "<img src=x" not in card
    assert "Пациент записан" in card
    history = await (await c.get("/calls?converted=yes")).text()
    assert "79990005566" in history
    # the same slot again: a clear error, no second appointment
    again = await c.post("/booking", data=form | {"last_name": "Другой"})
    assert again.status == 400 and "уже занято" in await again.text()
    n = db.query_now("SELECT COUNT(*) FROM appointments WHERE starts_at = '2026-11-24T09:00'")[0][0]
    assert n == 1
    # no CSRF token: refused, nothing written
    bad = await c.post("/booking", data={k: v for k, v in form.items() if k != "csrf_token"} | {"slot": "2026-11-24T09:30"})
    assert bad.status == 403


async def test_patient_card_and_schedule_pages(app) -> None:
    _, server, _ = app
    c = await login(server, "admin", "pw-admin-1")
    card = await (await c.get(f"/patients/{PETROVA}")).text()
    for text in ("Петрова Анна Сергеевна", "долг 1 500 ₽", "4 500 ₽", "67%", "ДМС-0042-7781",
                 "Аллергия на лидокаин", "data-number=\"+79161234567\""):
        assert text in card, text
    assert (await c.get("/patients/9999")).status == 404
    kid = await (await c.get(f"/patients/{KID}")).text()
    assert "Смирнова Елена Ивановна" in kid and 'data-number="+79265554433"' in kid
    sched = await (await c.get("/schedule?date=2026-11-24")).text()
    assert "Кузнецова Ольга Викторовна" in sched and "Записать" in sched
    assert "Расписание: вторник, 24.11.2026" in sched
    found = await (await c.get("/patients?q=7916")).text()
    assert "Петрова" in found
    tasks = await (await c.get("/tasks")).text()
    assert "подобрать время" in tasks and "Иванов" in tasks
    token = await csrf(c)
    resp = await c.post("/tasks", data={"csrf_token": token, "patient": str(IVANOV), "title": "Перезвонить",
                                        "due": "2026-11-25", "back": "https://evil.example/"},
                        allow_redirects=False)
    assert resp.headers["Location"] == "/schedule"  # no open redirect


async def test_settings_roles_and_tag_flow(app) -> None:
    application, server, _ = app
    admin = await login(server, "admin", "pw-admin-1")
    assert (await admin.get("/settings")).status == 403
    assert "/settings" not in await (await admin.get("/patients")).text()
    boss = await login(server, "boss", "pw-boss-12")
    token = await csrf(boss)
    r = await boss.post("/settings", data={"csrf_token": token, "action": "tags", "tags_enabled": "1",
                                           "tags_mode": "always"})
    assert r.status == 200  # redirected back to the page
    db = application[SERVICES].db
    assert await clinic_settings.get(db, "tags_enabled") is True
    admin_phone = await login(server, "admin", "pw-admin-1", phone="101")
    headers = {"X-CSRF-Token": await csrf(admin_phone)}
    # the call the pop-up is about: it rang 101 after the admin took that phone
    await calls.save_call(db, answered_call("900.1", time.time() + 1, "79161234567"))
    shown = await (await admin_phone.post("/tags/prompt", json={"call": "900.1", "phone": "+79161234567",
                                                               "since": NOW}, headers=headers)).json()
    assert shown["show"] and shown["other"] == "Другая метка"
    tag_id = shown["groups"][0]["tags"][0]["id"]
    empty = await admin_phone.post("/tags/save", json={"call": "900.1", "tags": []}, headers=headers)
    assert empty.status == 400
    ok = await admin_phone.post("/tags/save", json={"call": "900.1", "tags": [tag_id]}, headers=headers)
    assert ok.status == 200
    assert (await admin_phone.post("/tags/save", json={"call": "900.1", "tags": [tag_id]}, headers=headers)).status == 400
    no_csrf = await admin_phone.post("/tags/save", json={"call": "900.2", "tags": [tag_id]})
    assert no_csrf.status == 403
    r = await boss.post("/settings", data={"csrf_token": token, "action": "user", "user": "1",
                                           "role": "root", "history_access": "edit"})
    assert r.status == 400
    # a new doctor with working hours: Monday and Wednesday 10:00-12:00, 20-minute slots
    from multidict import MultiDict
    form = MultiDict([("csrf_token", token), ("action", "doctor_add"), ("full_name", "Лебедев Игорь"),
                      ("specialty", "ортодонт"), ("branch", "1"), ("weekday", "0"), ("weekday", "2"),
                      ("start", "10:00"), ("end", "12:00"), ("slot", "20")])
    assert (await boss.post("/settings", data=form)).status == 200
    doc = db.query_now("SELECT id FROM doctors WHERE specialty = 'ортодонт'")[0][0]
    assert len(await schedule.day_slots(db, doc, date(2026, 11, 23), TZ)) == 6
    assert await schedule.day_slots(db, doc, date(2026, 11, 24), TZ) == []
    bad = MultiDict([("csrf_token", token), ("action", "doctor_add"), ("full_name", "X"), ("specialty", "Y"),
                     ("weekday", "0"), ("start", "12:00"), ("end", "10:00"), ("slot", "20")])
    assert (await boss.post("/settings", data=bad)).status == 400


async def test_comment_pages_and_rights(app) -> None:
    application, server, _ = app
    db = application[SERVICES].db
    await calls.save_call(db, answered_call("950.1", NOW - 600, "79161234567"))
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get("/comment?call=950.1")).text()
    assert "Петрова Анна Сергеевна" in page and "Пациент. Хочет записаться" in page
    token = await csrf(c)
    r = await c.post("/comment", data={"csrf_token": token, "call": "950.1", "patient": str(PETROVA),
                                       "caller_type": "wants_booking", "topic": "", "text": "x"})
    assert r.status == 400 and "тему" in await r.text()
    topic = (await comments.topics(db))[0]["id"]
    r = await c.post("/comment", data={"csrf_token": token, "call": "950.1", "patient": str(PETROVA),
                                       "caller_type": "wants_booking", "topic": str(topic), "text": "Имплант",
                                       "action": "book"}, allow_redirects=False)
    assert r.headers["Location"] == f"/booking?call=950.1&patient={PETROVA}"
    assert (await c.get("/comment?call=../etc")).status == 404
    async with db.transaction() as tx:
        await tx.execute("UPDATE users SET history_access = 'read' WHERE login = 'admin'")
    assert (await c.get("/comment?call=950.1")).status == 403
    # ...but a call the user answered is theirs to comment, right or not
    admin_id = db.query_now("SELECT id FROM users WHERE login = 'admin'")[0][0]
    async with db.transaction() as tx:
        await tx.execute("UPDATE calls SET answered_by_user = ? WHERE linkedid = '950.1'", (admin_id,))
    assert (await c.get("/comment?call=950.1")).status == 200
    assert (await c.get("/calls/manual")).status == 403


async def test_click_to_call_refusals(app) -> None:
    application, server, _ = app
    c = await login(server, "admin", "pw-admin-1")
    headers = {"X-CSRF-Token": await csrf(c)}
    r = await c.post("/dial", json={"number": "+79161234567"}, headers=headers)
    assert r.status == 409 and "Выберите телефон" in (await r.json())["error"]
    c2 = await login(server, "admin", "pw-admin-1", phone="101")
    headers = {"X-CSRF-Token": await csrf(c2)}
    r = await c2.post("/dial", json={"number": "не номер"}, headers=headers)
    assert r.status == 409 and "Неверный номер" in (await r.json())["error"]
    await clinic_settings.put(application[SERVICES].db, "telephony_suspended", True)
    r = await c2.post("/dial", json={"number": "+79161234567"}, headers=headers)
    assert "приостановлен" in (await r.json())["error"]
    await clinic_settings.put(application[SERVICES].db, "telephony_suspended", False)
    # a chain's box of another branch: phone 101 (the demo's branch 1) is not on its Asterisk
    services = application[SERVICES]
    one_box = services.settings
    services.settings = dataclasses.replace(one_box, asterisk=dataclasses.replace(one_box.asterisk, branches=(2,)))
    r = await c2.post("/dial", json={"number": "+79161234567"}, headers=headers)
    assert r.status == 409 and "другого филиала" in (await r.json())["error"]
    services.settings = dataclasses.replace(one_box, asterisk=dataclasses.replace(one_box.asterisk, branches=(1, 2)))
    r = await c2.post("/dial", json={"number": "+79161234567"}, headers=headers)
    assert "Нет связи с АТС" in (await r.json())["error"]  # AMI is not reachable in this test
    services.settings = one_box
    r = await c2.post("/dial", json={"number": "+79161234567"}, headers=headers)
    assert "Нет связи с АТС" in (await r.json())["error"]
    assert (await c2.post("/dial", json={"number": "+79161234567"})).status == 403  # no CSRF


async def test_distribution_rules(app) -> None:
    application, _, _ = app
    db = application[SERVICES].db
    hub = application[LIVE_HUB]
    user = await users.create_user(db, "callcentre", "pw-cc-1234")
    await distribution.add_rule(db, user_id=user, workstation=None, branch_id=None, did="74951110002", queue=None)
    rules = await distribution.rules_for(db, user, None)
    mine = hub.subscribe(user, "101", rules)
    other = hub.subscribe(999, "101", ())
    from crm.rules.call_records import LiveUpdate

    def card(did: str) -> LiveUpdate:
        return LiveUpdate(LiveCall(did, "incoming", "101", "ringing", "79161234567", "", did,
                                   "reception-ringall", "", "", NOW))
    hub.on_change(card("74951110001"))
    hub.on_change(card("74951110002"))
    await hub.drain()
    assert mine.queue.qsize() == 1 and other.queue.qsize() == 2
    # a workstation's rules win over the user's own
    await distribution.add_rule(db, user_id=None, workstation="front-desk", branch_id=1, did=None, queue=None)
    assert (await distribution.rules_for(db, user, "front-desk"))[0].branch_id == 1
    with pytest.raises(ValueError):
        await distribution.add_rule(db, user_id=None, workstation=None, branch_id=None, did=None, queue=None)


async def test_booking_copies_the_call_comment_and_follows_the_sms_default(app) -> None:
    """Seed 001: the call's comment can be copied into the appointment's comment; a clinic
    setting keeps «СМС оповещение» ticked by default."""
    application, server, _ = app
    db = application[SERVICES].db
    await calls.save_call(db, answered_call("810.1", NOW - 600, "79161234567"))
    await comments.save_comment(db, "810.1", caller_type="patient_question",
                                topic_id=(await comments.topics(db))[0]["id"], patient_id=PETROVA,
                                text="Болит зуб <справа>", user_id=None)
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get(f"/booking?call=810.1&patient={PETROVA}&doctor=1&date=2026-11-24")).text()
    assert 'data-copy-to="#appointment-comment"' in page and 'data-text="Болит зуб &lt;справа&gt;"' in page
    assert 'name="notify" value="1" >' in page  # not ticked by default
    assert "Скопировать комментарий звонка" not in await (await c.get(f"/booking?patient={PETROVA}")).text()
    boss = await login(server, "boss", "pw-boss-12")
    r = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "booking", "notify_default": "1"},
                        allow_redirects=False)
    assert r.status == 302 and await clinic_settings.get(db, "notify_default") is True
    assert 'name="notify" value="1" checked>' in await (await c.get(f"/booking?patient={PETROVA}")).text()


async def test_a_clinic_number_that_hides_callers(app) -> None:
    """Seed 000: «Calls received from patients via ProDoctorov are displayed without a phone
    number, even if the patient is already in the clinic database.»"""
    application, server, _ = app
    db = application[SERVICES].db
    boss = await login(server, "boss", "pw-boss-12")
    r = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "hide_caller",
                                           "did": "74951110002", "hidden": "1"}, allow_redirects=False)
    assert r.status == 302
    hidden = dataclasses.replace(answered_call("820.1", NOW - 600, "79161234567"), did="74951110002",
                                 callee="74951110002")
    await calls.save_call(db, hidden)
    await calls.save_call(db, answered_call("820.2", NOW - 300, "79031112233"))  # the main number: shown
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get("/calls")).text()
    assert "79161234567" not in page and "номер скрыт" in page and "Петрова Анна Сергеевна" in page
    assert "79031112233" in page
    csv_text = await (await c.get("/calls.csv")).text()
    assert "79161234567" not in csv_text and "79031112233" in csv_text
    stored = await call_listing.get_call_by_linkedid(db, "820.1")
    assert stored["number_hidden"] and stored["phone_e164"] is None and stored["caller_raw"] == ""
    assert stored["patients"][0]["id"] == PETROVA  # still known, just not shown
    card = await application[LIVE_HUB].card(LiveCall("820.3", "incoming", "101", "ringing", "79161234567", "", "74951110002",
                                                "reception-linear", "patient", "1", NOW))
    assert card["phone"] == "" and card["caller"] == "" and card["number_hidden"]
    assert card["patients"][0]["full_name"] == "Петрова Анна Сергеевна"
    bad = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "hide_caller",
                                             "did": "000", "hidden": "1"})
    assert bad.status == 400


async def test_staff_move_and_cancel_a_future_appointment(app) -> None:
    """Seed 001: «Будущие приемы пациентов можно отменять или переносить на другой день» — from
    the patient card and from the context block beside the booking and comment windows."""
    application, server, _ = app
    db = application[SERVICES].db
    appt = await schedule.book(db, patient_id=IVANOV, doctor_id=1, starts_at=tomorrow_at(12), minutes=30, now=NOW)
    blocker = await schedule.book(db, patient_id=KID, doctor_id=1, starts_at=tomorrow_at(15), minutes=30, now=NOW)
    c = await login(server, "admin", "pw-admin-1")
    card = await (await c.get(f"/patients/{IVANOV}")).text()
    assert f'href="/booking?move={appt}&amp;date=2026-11-24"' in card
    form_page = await (await c.get(f"/booking?move={appt}&date=2026-11-25")).text()
    assert "Перенос приёма 2026-11-24 12:00" in form_page and f'name="move" value="{appt}"' in form_page
    assert f'href="/booking?move={appt}' in form_page  # the context block offers it too
    token = await csrf(c)
    clash = await c.post("/booking", data={"csrf_token": token, "move": str(appt), "doctor": "1",
                                           "slot": "2026-11-24T15:00"})
    assert clash.status == 400 and "занято" in await clash.text()
    r = await c.post("/booking", data={"csrf_token": token, "move": str(appt), "doctor": "1",
                                       "slot": "2026-11-25T10:30"}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == f"/patients/{IVANOV}?moved={appt}"
    moved = await schedule.get_appointment(db, appt)
    assert moved["starts_at"] == "2026-11-25T10:30" and moved["status"] == "unconfirmed"
    assert "Приём перенесён" in await (await c.get(r.headers["Location"])).text()
    # cancelled from the context block's form: the same status route
    r = await c.post(f"/appointments/{blocker}/status", data={"csrf_token": token, "status": "cancelled",
                                                            "back": f"/patients/{KID}"}, allow_redirects=False)
    assert r.status == 302 and (await schedule.get_appointment(db, blocker))["status"] == "cancelled"
    gone = await c.get(f"/booking?move={blocker}")
    assert gone.status == 400  # a cancelled appointment is not moved


async def test_the_comment_window_finds_anyone_and_retargets_the_call(app) -> None:
    """Seed 001: «при введении фамилии и имени в поле «Кто» справа появится вся информация об
    этом пациенте»; the wife calls for her husband: the call becomes his."""
    application, server, _ = app
    db = application[SERVICES].db
    await calls.save_call(db, answered_call("830.1", NOW - 600, "79161234567"))  # Петрова's number
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get("/comment?call=830.1&find=Иванов")).text()
    assert f'/comment?call=830.1&amp;patient={IVANOV}' in page and "Иванов Иван Иванович" in page
    chosen = await (await c.get(f"/comment?call=830.1&patient={IVANOV}")).text()
    assert f'<option value="{IVANOV}" selected>Иванов Иван Иванович</option>' in chosen
    assert f'href="/patients/{IVANOV}#appointments"' in chosen  # the context block is his
    topic = (await comments.topics(db))[0]["id"]
    r = await c.post("/comment", data={"csrf_token": await csrf(c), "call": "830.1", "patient": str(IVANOV),
                                       "caller_type": "patient_question", "topic": str(topic), "text": "за мужа"},
                     allow_redirects=False)
    assert r.status == 302
    stored = await call_listing.get_call_by_linkedid(db, "830.1")
    assert [p["id"] for p in stored["patients"]] == [IVANOV] and stored["comment"]["patient_id"] == IVANOV
    assert "Иванов Иван Иванович" in await (await c.get("/calls")).text()
    assert "Никого не нашли" in await (await c.get("/comment?call=830.1&find=Несуществующий")).text()


async def test_the_patient_card_can_be_edited(app) -> None:
    """Seed 001: «Если новый номер теперь основной, внесите его в карточку пациента» — and the
    escort's inputs (consent, notification opt-out, the app's push) are set here."""
    application, server, _ = app
    db = application[SERVICES].db
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get(f"/patients/{PETROVA}/edit")).text()
    assert 'value="+79161234567"' in page and "Согласие на обработку" in page
    token = await csrf(c)
    form = {"csrf_token": token, "last_name": "Петрова", "first_name": "Анна", "middle_name": "Сергеевна",
            "birth_date": "1985-03-14", "notify_opt_out": "1", "push_enabled": "1", "notes": "<b>VIP</b>"}
    body = list(form.items()) + [("phone", "8 (903) 555-00-11"), ("phone_kind", "mobile"),
                                 ("phone", "+79161234567"), ("phone_kind", "mobile"),
                                 ("phone", "+7 495 111-22-33"), ("phone_kind", "landline")]
    r = await c.post(f"/patients/{PETROVA}/edit", data=body, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == f"/patients/{PETROVA}?saved=1"
    p = await patients.get_for_edit(db, PETROVA)
    assert [ph["e164"] for ph in p["phones"]] == ["+79035550011", "+79161234567", "+74951112233"]
    assert p["phones"][2]["kind"] == "landline"
    assert (p["consent_pd"], p["notify_opt_out"], p["push_enabled"]) == (0, 1, 1)
    card = await (await c.get(r.headers["Location"])).text()
    assert "Карточка сохранена" in card and "<b>VIP</b>" not in card
    # the new main number is hers now: a call from it finds her
    assert [x.id for x in await patients.find_by_phone(db, "+79035550011")] == [PETROVA]
    bad = await c.post(f"/patients/{PETROVA}/edit", data=list(form.items()) + [("phone", "12ab"), ("phone_kind", "mobile")])
    assert bad.status == 400 and "Неверный номер" in await bad.text()
    assert [ph["e164"] for ph in (await patients.get_for_edit(db, PETROVA))["phones"]][0] == "+79035550011"
    future = await c.post(f"/patients/{PETROVA}/edit", data={**form, "birth_date": "2999-01-01"})
    assert future.status == 400 and "Неверная дата рождения" in await future.text()
    assert (await c.get("/patients/999999/edit")).status == 404


async def test_booking_a_ward_names_the_calling_guardian(app) -> None:
    application, server, _ = app
    db = application[SERVICES].db
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get(f"/booking?patient={KID}&phone=%2B79265554433&doctor=1&date=2026-11-24")).text()
    mother = re.search(r'<option value="(\d+)" selected>([^<]+)</option>', page[page.index('name="guardian"'):])
    assert mother is not None
    r = await c.post("/booking", data={"csrf_token": await csrf(c), "patient": str(KID), "doctor": "1",
                                       "slot": "2026-11-24T11:00", "guardian": mother.group(1)}, allow_redirects=False)
    assert r.status == 302
    assert await schedule.last_guardian(db, KID) == int(mother.group(1))
    card = await (await c.get(f"/patients/{KID}")).text()
    assert f"Опекун: {mother.group(2)}" in card and 'data-number="+79265554433" title="Позвонить опекуну"' in card


async def test_employees_and_contractors(app) -> None:
    """Seed 001: a caller typed by hand as «Сотрудник» or «Прочие и контрагенты» leaves the
    patient statistics; «Контрагенты при следующем звонке будут считаться таковыми
    автоматически»; their numbers are managed on one page."""
    from crm import identify

    application, server, _ = app
    db = application[SERVICES].db
    boss = await login(server, "boss", "pw-boss-12")
    r = await boss.post("/contacts", data={"csrf_token": await csrf(boss), "action": "add", "kind": "employee",
                                           "name": "Сидорова Ж. К.", "detail": "медсестра", "phone": "+79001112233"},
                        allow_redirects=False)
    assert r.status == 302
    assert identify.identify(db, "+79001112233").kind == "employee"
    page = await (await boss.get("/contacts")).text()
    assert "Сидорова Ж. К." in page and "+79001112233" in page
    admin = await login(server, "admin", "pw-admin-1")
    assert (await admin.get("/contacts")).status == 200
    denied = await admin.post("/contacts", data={"csrf_token": await csrf(admin), "action": "add", "kind": "contractor",
                                                 "name": "X", "phone": ""})
    assert denied.status == 403
    # a supplier calls from an unknown number; the administrator types it by hand
    await calls.save_call(db, answered_call("840.1", NOW - 600, "79007778899"))
    assert (await call_listing.get_call_by_linkedid(db, "840.1"))["counts_for_stats"]
    topic = (await comments.topics(db))[0]["id"]
    r = await admin.post("/comment", data={"csrf_token": await csrf(admin), "call": "840.1", "caller_type": "other",
                                           "topic": str(topic), "contractor_name": "ООО Дентсервис"},
                         allow_redirects=False)
    assert r.status == 302
    assert not (await call_listing.get_call_by_linkedid(db, "840.1"))["counts_for_stats"]
    who = identify.identify(db, "+79007778899")
    assert who.kind == "contractor" and "Дентсервис" in who.display
    await calls.save_call(db, answered_call("840.2", NOW - 300, "79007778899"))  # the next call: typed
    assert (await call_listing.get_call_by_linkedid(db, "840.2"))["caller_kind"] == "contractor"


async def test_message_examples_and_the_branch_name_in_messages(app) -> None:
    """Seed 002: «To view the sample messages, click on «Примеры сообщений». In WA and SMS
    messages, the name of the branch is inserted from the "Name in messages" field»."""
    application, server, _ = app
    db = application[SERVICES].db
    boss = await login(server, "boss", "pw-boss-12")
    branch = (await directory.branches(db))[0]["id"]
    r = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "branch_message_name",
                                           "branch": str(branch), "message_name": "Улыбка на Тверской"},
                        allow_redirects=False)
    assert r.status == 302
    page = await (await boss.get("/escort")).text()
    assert "Примеры сообщений" in page and page.count("Улыбка на Тверской") >= 4  # details, robot, confirm, reminder
    assert "Анна Сергеевна, здравствуйте. Звоним подтвердить запись к врачу" in page
    bad = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "branch_message_name",
                                             "branch": "999", "message_name": "X"})
    assert bad.status == 400


def test_escort_times_also_in_moscow_time() -> None:
    """Seed 002: the escort's notification/call time «at Moscow time»."""
    from web.app import with_moscow_time

    ts = datetime(2026, 11, 24, 7, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert with_moscow_time(ts, ZoneInfo("Europe/Moscow")) == "24.11 10:00"
    assert with_moscow_time(ts, ZoneInfo("Asia/Yekaterinburg")) == "24.11 12:00 (МСК 10:00)"


async def test_topics_can_be_retired_and_history_keeps_them(app) -> None:
    """Seed 001's «Темы разговоров» directory: a retired topic is no longer offered; the
    comments that named it keep it."""
    application, server, _ = app
    db = application[SERVICES].db
    await calls.save_call(db, answered_call("850.1", NOW - 600, "79161234567"))
    topic = next(t for t in await comments.topics(db) if t["name"] == "Гигиена")
    await comments.save_comment(db, "850.1", caller_type="patient_question", topic_id=topic["id"],
                                patient_id=PETROVA, text="", user_id=None)
    boss = await login(server, "boss", "pw-boss-12")
    r = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "topic_retire",
                                           "topic": str(topic["id"])}, allow_redirects=False)
    assert r.status == 302
    assert "Гигиена" not in [t["name"] for t in await comments.topics(db)]
    assert (await call_listing.get_call_by_linkedid(db, "850.1"))["comment"]["topic"] == "Гигиена"
    page = await (await boss.get(f"/booking?call=850.1&patient={PETROVA}")).text()
    assert "Записать пациента (Разговор с пациентом — Петрова Анна Сергеевна)" in page


async def test_booking_filters_by_a_group_of_specialists(app) -> None:
    """Seed 001: «отфильтруйте расписание по врачу или группе специалистов»."""
    application, server, _ = app
    doctors = await schedule.doctors(application[SERVICES].db)
    specialty = doctors[-1]["specialty"]
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get(f"/booking?specialty={specialty}&doctor={doctors[0]['id']}")).text()
    doctor_select = page[page.index('name="doctor"'):page.index("</select>", page.index('name="doctor"'))]
    shown = {d["id"] for d in doctors if f'value="{d["id"]}"' in doctor_select}
    assert shown == {d["id"] for d in doctors if d["specialty"] == specialty}
    assert f'<option value="{specialty}" selected>' in page
    unknown = await (await c.get("/booking?specialty=Астролог")).text()
    assert all(f'value="{d["id"]}"' in unknown for d in doctors)  # an unknown group filters nothing


async def test_a_guardians_card_names_the_guardian(app) -> None:
    """Seed 000 / the panel issue: before the answer only the number (the card script shows no
    «Пациенты: N» for a guardian); once answered, the guardian and the wards by name."""
    application, _, _ = app
    card = await application[LIVE_HUB].card(LiveCall("860.1", "incoming", "101", "talking", "79265554433", "",
                                               "74951110001", "reception-ringall", "guardian", "", NOW))
    assert card["kind"] == "guardian" and card["guardian_name"]
    assert {p["full_name"] for p in card["patients"]} >= {"Смирнова Мария Олеговна", "Смирнов Олег Петрович"}
    script = (Path(__file__).parents[2] / "web" / "static" / "cards.js").read_text()
    assert '"Опекун: " + (c.guardian_name' in script


async def test_a_guardians_call_in_the_history_names_the_guardian_and_the_wards(app) -> None:
    """Seed 000: «Пациенты: 2…» expands to the guardian and the wards."""
    application, server, _ = app
    db = application[SERVICES].db
    await calls.save_call(db, answered_call("870.1", NOW - 600, "79265554433"))
    stored = await call_listing.get_call_by_linkedid(db, "870.1")
    assert stored["caller_kind"] == "guardian" and stored["guardian"]
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get("/calls")).text()
    # #32: the label is the seed's («the guardian's phone number will be displayed next «Пациенты: 2...»»)
    assert "<summary>Пациенты: 2</summary>" in page
    assert f'<div class="guardian">Опекун: {stored["guardian"]}</div>' in page
    assert f'<a href="/patients/{KID}">' in page


async def test_the_clinics_own_caller_groups(app) -> None:
    """Seed 001: «Кто, тип» comes from the «Группы людей» directory: the clinic adds its own
    groups (calls of a non-patient group leave the patient statistics) and retires them."""
    application, server, _ = app
    db = application[SERVICES].db
    boss = await login(server, "boss", "pw-boss-12")
    for name, counts in (("Страховая компания", ""), ("Пациент. По рекомендации", "1")):
        r = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "caller_group_add",
                                               "name": name, "counts": counts}, allow_redirects=False)
        assert r.status == 302
    types = await comments.caller_types(db)
    insurer = next(k for k, v in types.items() if v == "Страховая компания")
    referred = next(k for k, v in types.items() if v == "Пациент. По рекомендации")
    await calls.save_call(db, answered_call("880.1", NOW - 600, "79990001111"))
    await calls.save_call(db, answered_call("880.2", NOW - 300, "79990002222"))
    c = await login(server, "admin", "pw-admin-1")
    assert "Страховая компания" in await (await c.get("/comment?call=880.1")).text()
    topic = str((await comments.topics(db))[0]["id"])
    for lid, kind in (("880.1", insurer), ("880.2", referred)):
        r = await c.post("/comment", data={"csrf_token": await csrf(c), "call": lid, "caller_type": kind,
                                           "topic": topic}, allow_redirects=False)
        assert r.status == 302
    assert not (await call_listing.get_call_by_linkedid(db, "880.1"))["counts_for_stats"]
    assert (await call_listing.get_call_by_linkedid(db, "880.2"))["counts_for_stats"]
    r = await boss.post("/settings", data={"csrf_token": await csrf(boss), "action": "caller_group_retire",
                                           "group": insurer.partition(":")[2]}, allow_redirects=False)
    assert r.status == 302 and insurer not in await comments.caller_types(db)
    assert (await call_listing.get_call_by_linkedid(db, "880.1"))["comment"]["caller_type"] == insurer  # kept
    bad = await c.post("/comment", data={"csrf_token": await csrf(c), "call": "880.2", "caller_type": insurer,
                                         "topic": topic})
    assert bad.status == 400  # a retired group is no longer offered


async def test_guardians_of_an_adult_are_shown_with_more(app) -> None:
    """Seed 000/001: guardians of adults under guardianship are shown too, «Ещё» when many."""
    application, server, _ = app
    db = application[SERVICES].db
    async with db.transaction() as tx:
        for i in range(4):
            gid = (await tx.execute("INSERT INTO guardians (full_name) VALUES (?)", (f"Опекун Номер{i}",))).lastrowid
            await tx.execute("INSERT INTO guardianships (guardian_id, patient_id) VALUES (?, ?)", (gid, IVANOV))
    c = await login(server, "admin", "pw-admin-1")
    card = await (await c.get(f"/booking?patient={IVANOV}")).text()  # an adult, with the context block
    assert "Опекун Номер0" in card and "Опекун Номер1" in card and "Ещё 2" in card
    assert 'name="guardian"' in card  # booking an adult under guardianship names the guardian too


async def test_guardians_are_managed_on_the_card(app) -> None:
    """The card's edit page adds a guardian (reusing the one a known number belongs to) and ends
    a guardianship; the guardian's next call is recognised."""
    from crm import identify

    application, server, _ = app
    db = application[SERVICES].db
    c = await login(server, "admin", "pw-admin-1")
    token = await csrf(c)
    r = await c.post(f"/patients/{IVANOV}/guardians", data={"csrf_token": token, "action": "add",
                                                          "full_name": "Иванова Мария", "relation": "жена",
                                                          "phone": "+79267770000"}, allow_redirects=False)
    assert r.status == 302
    assert [g["full_name"] for g in await patients.guardians_of(db, IVANOV)] == ["Иванова Мария"]
    assert identify.identify(db, "+79267770000").kind == "guardian"
    # the mother of the demo's children, by her number: the same guardian, one more ward
    await c.post(f"/patients/{IVANOV}/guardians", data={"csrf_token": token, "action": "add",
                                                      "full_name": "другое имя", "phone": "+79265554433"})
    mother = [g for g in await patients.guardians_of(db, IVANOV) if "+79265554433" in (g["phones"] or "")]
    assert mother and mother[0]["full_name"] != "другое имя"
    page = await (await c.get(f"/patients/{IVANOV}/edit")).text()
    assert page.count("Иванова Мария (жена)") == 1  # listed once, in the guardians section
    assert "<title>Карточка пациента" in page or "Карточка пациента</title>" in page
    r = await c.post(f"/patients/{IVANOV}/guardians", data={"csrf_token": token, "action": "remove",
                                                          "guardian": str(mother[0]["id"])}, allow_redirects=False)
    assert r.status == 302 and len(await patients.guardians_of(db, IVANOV)) == 1
    assert await patients.guardians_of(db, KID)  # still the children's mother
    bad = await c.post(f"/patients/{IVANOV}/guardians", data={"csrf_token": token, "action": "add",
                                                            "full_name": "X", "phone": "zz"})
    assert bad.status == 400


async def test_consent_is_asked_not_assumed_for_a_new_patient(app) -> None:
    """The escort's exclusion inputs are set in the panel: a new patient's consent to personal
    data processing is a visible tick (on by default), not silently true."""
    application, server, _ = app
    db = application[SERVICES].db
    c = await login(server, "admin", "pw-admin-1")
    page = await (await c.get("/patients/new")).text()
    assert 'name="consent_pd" value="1" checked' in page
    token = await csrf(c)
    r = await c.post("/patients/new", data={"csrf_token": token, "last_name": "Без", "first_name": "Согласия",
                                            "phone": "+79995550101", "then": "card"}, allow_redirects=False)
    pid = int(r.headers["Location"].rsplit("/", 1)[1])
    assert (await patients.get_for_edit(db, pid))["consent_pd"] == 0
    r = await c.post("/patients/new", data={"csrf_token": token, "last_name": "С", "first_name": "Согласием",
                                            "phone": "+79995550102", "consent_pd": "1", "then": "card"},
                     allow_redirects=False)
    pid = int(r.headers["Location"].rsplit("/", 1)[1])
    assert (await patients.get_for_edit(db, pid))["consent_pd"] == 1


async def test_a_caller_typed_while_the_call_is_on_leaves_the_statistics_when_it_is_stored(app) -> None:
    """The comment window opens while the call rings: a caller typed there as «Сотрудник» leaves
    the patient statistics once the call is stored, as when typed afterwards."""
    application, _, _ = app
    db = application[SERVICES].db
    topic = (await comments.topics(db))[0]["id"]
    await comments.save_comment(db, "890.1", caller_type="employee", topic_id=topic, patient_id=None,
                                text="", user_id=None)  # the call row does not exist yet
    await calls.save_call(db, answered_call("890.1", NOW - 60, "79995556677"))
    assert not (await call_listing.get_call_by_linkedid(db, "890.1"))["counts_for_stats"]


async def test_birth_dates_are_typed_as_people_write_them(app) -> None:
    """Date fields do not depend on the browser's locale: «14.03.1985» is taken (and ISO too),
    stored as the ISO day, shown back as 14.03.1985; a future or impossible date is refused."""
    application, server, _ = app
    db = application[SERVICES].db
    c = await login(server, "admin", "pw-admin-1")
    token = await csrf(c)
    r = await c.post("/patients/new", data={"csrf_token": token, "last_name": "Датов", "first_name": "Иван",
                                            "birth_date": "14.03.1985", "phone": "+79995550103", "consent_pd": "1",
                                            "then": "card"}, allow_redirects=False)
    pid = int(r.headers["Location"].rsplit("/", 1)[1])
    assert (await patients.get_for_edit(db, pid))["birth_date"] == "1985-03-14"
    card = await (await c.get(f"/patients/{pid}")).text()
    assert "14.03.1985" in card and "1985-03-14" not in card.split("<main>")[1].split("href")[0]
    edit = await (await c.get(f"/patients/{pid}/edit")).text()
    assert 'value="14.03.1985"' in edit
    for bad in ("31.02.1985", "01.01.2999"):
        r = await c.post("/patients/new", data={"csrf_token": token, "last_name": "Датов", "first_name": "Пётр",
                                                "birth_date": bad, "phone": "+79995550104", "then": "card"})
        assert r.status == 400 and "Неверная дата рождения" in await r.text()


async def test_a_doctor_s_week_and_the_recent_patients(app) -> None:
    """The schedule has a date field and a week per doctor (Monday to Sunday, a row per slot
    time, the days the doctor does not work empty); the patients page lists recent patients
    before any search."""
    application, server, _ = app
    db = application[SERVICES].db
    c = await login(server, "admin", "pw-admin-1")
    doctor = (await schedule.doctors(db))[0]
    week = await (await c.get(f"/schedule?date=25.11.2026&week={doctor['id']}")).text()
    assert f"{doctor['full_name']}, неделя с 23.11.2026" in week
    for label in ("Пн 23.11.2026", "Вс 29.11.2026", "09:00"):
        assert label in week, label
    assert 'name="date"' in week and 'value="25.11.2026"' in week  # the date field, dd.mm.yyyy
    # an unknown doctor: the ordinary day view, not an error
    assert "Расписание: среда, 25.11.2026" in await (await c.get("/schedule?date=2026-11-25&week=999")).text()
    recent = await (await c.get("/patients")).text()
    assert "Недавние" in recent and "Петрова" in recent


async def test_the_sms_tick_says_what_came_of_it(app) -> None:
    """After booking with «СМС оповещение» the card says whether the message is queued or why
    it will not go (a landline), instead of a bare «записан»."""
    _, server, _ = app
    c = await login(server, "admin", "pw-admin-1")
    token = await csrf(c)
    said = {}
    for slot, phone in (("2026-11-24T10:00", "+79990007788"), ("2026-11-24T10:30", "+74957654321")):
        form = {"csrf_token": token, "doctor": "2", "slot": slot, "last_name": "Смсов", "first_name": "Иван",
                "phone": phone, "consent_pd": "1", "notify": "1"}
        resp = await c.post("/booking", data=form, allow_redirects=False)
        assert resp.status == 302, await resp.text()
        said[phone] = await (await c.get(resp.headers["Location"])).text()
    assert "поставлено в очередь" in said["+79990007788"]
    assert "СМС не отправлено: В контактах пациента стационарный или иностранный номер" in said["+74957654321"]

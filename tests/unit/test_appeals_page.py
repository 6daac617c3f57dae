"""«История обращений» in the panel: a day's calls, a request and a booking become обращения with
their success, both views, filters, totals, a patient's own history, CSV, the right, hostile
input."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import ad_channels, callbacks, calls, comments, directory, patients, schedule, tasks, users
from crm.clock import SettableClock
from crm.demo import load_demo
from crm.rules import ad_channels as ac
from crm.rules import appeals as ap
from crm.rules.call_records import CallRecord, LegRecord
from pbx.app import SERVICES, Adapters, build_app
from tests.unit.panel_client import log_in, offline_settings

TZ = ZoneInfo("Europe/Moscow")


def at(h: int, m: int = 0, day: int = 2) -> float:
    return datetime(2026, 12, day, h, m, tzinfo=TZ).timestamp()


def incoming(lid: str, t0: float, caller: str, *, answered: bool = True) -> CallRecord:
    leg = LegRecord("101", lid + ".1", "answered" if answered else "no_answer", t0, t0 + 5 if answered else None,
                    t0 + 65, not answered)
    return CallRecord(lid, "incoming", "incoming" if answered else "missed", "74951110001", caller, "74951110001",
                      "reception", (leg,), "101" if answered else "", t0, t0 + 5 if answered else None, t0 + 65,
                      5.0, 60.0 if answered else 0.0, "caller", "")


@pytest.fixture
async def env(tmp_path: Path):
    clock = SettableClock(at(18))
    app = build_app(offline_settings(tmp_path), clock=clock, run_escort=False, adapters=Adapters.offline())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        db = app[SERVICES].db
        await load_demo(db, now=at(9, day=1), robot_patients=False)
        await users.create_user(db, "anna", "pw-anna-12", history_access="read")
        await users.create_user(db, "blind", "pw-blind-12", appeals_access=False)
        pid = await patients.add_patient(db, "Смирнова", "Анна", "Петровна", phone_numbers=("+79035551111",))
        # a missed call at 9:00, her call at 10:00 with a booking 10 min after it; a stranger's call
        for record in (incoming("1.0", at(9), "79035551111", answered=False), incoming("2.0", at(10), "79035551111"),
                       incoming("3.0", at(11), "79037770000")):
            await calls.save_call(db, record)
        topic = (await comments.topics(db))[0]
        await comments.save_comment(db, "2.0", caller_type="wants_booking", topic_id=topic["id"], patient_id=pid,
                                    text="Хочет на чистку", user_id=None)
        await schedule.book(db, patient_id=pid, doctor_id=1, starts_at=datetime(2026, 12, 4, 10, tzinfo=TZ),
                            minutes=30, now=at(10, 11))
        await callbacks.create_request(db, callbacks.NewRequest(phone="+79039990000", source_name="НаПоправку",
                                                                service="Имплант"), at(12))
        admin = await users.create_user(db, "olga", "pw-olga-12")
        await callbacks.create_request(db, callbacks.NewRequest(phone="+79039990001", source_name="администратора",
                                                                created_by=admin), at(13))
        yield app, client, pid


async def test_grouped_and_flat_views(env) -> None:
    app, client, pid = env
    await log_in(client, "anna", "pw-anna-12")
    page = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).text()
    assert 'class="appeals-count">4<' in page  # Смирнова's two calls are one обращение
    assert "Смирнова Анна Петровна" in page and ap.BOOKED in page and ap.OPEN_REQUESTS in page
    assert "Хочет на чистку" in page and "Пациент. Хочет записаться" in page
    assert "Входящий. Пропущенный" in page and "Заявка. Актуальная" in page and "Заявка-диалог. Актуальная" in page
    flat = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat")).text()
    assert flat.count('<tr class="incoming') == 3 and flat.count('<tr class="request ') == 1
    assert flat.count('<tr class="request_dialog') == 1
    only_booked = await (await client.get(f"/appeals?since=2026-12-02&until=2026-12-02&success={ap.BOOKED}")).text()
    assert 'class="appeals-count">1<' in only_booked
    requests_only = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&kind=request")).text()
    assert 'class="appeals-count">1<' in requests_only and "Имплант" in requests_only
    totals = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&level1=success")).text()
    assert 'class="calls report appeal-totals"' in totals and "25.0 %" in totals and "50.0 %" in totals
    mine = await (await client.get(f"/appeals?patient={pid}")).text()  # her history, all dates
    assert 'class="appeals-count">1<' in mine
    rows = list(csv.reader(io.StringIO((await (await client.get(
        "/appeals.csv?since=2026-12-02&until=2026-12-02")).text()).lstrip("\ufeff")), delimiter=";"))
    assert rows[0][0] == "Дата" and len(rows) == 5 and any(r[5] == ap.BOOKED and r[10] == "2" for r in rows[1:])


async def test_the_right_and_bad_input(env) -> None:
    app, client, _ = env
    await log_in(client, "blind", "pw-blind-12")
    assert (await client.get("/appeals")).status == 403
    await client.post("/logout", data={})
    await log_in(client, "anna", "pw-anna-12")
    assert (await client.get("/appeals?since=2026-13-40")).status == 400
    assert (await client.get("/appeals?since=2026-12-05&until=2026-12-01")).status == 400
    assert (await client.get("/appeals?since=2020-01-01&until=2026-12-01")).status == 400  # over a year
    odd = await client.get("/appeals?kind=<script>&success=x&level1=zzz&employee=%00&patient=99999999999999999999")
    assert odd.status == 200 and "<script>" not in await odd.text()


async def test_a_narrowed_period_with_too_many_contacts_is_refused_not_built(env, monkeypatch) -> None:
    """Narrowed by contact (kind, «Кто, тип», topic, channel), a period is grouped anew in memory:
    a chain's year would take gigabytes, so the page counts first and says so. From the stored
    days the bound is higher; one patient's history (all years) is small: never refused."""
    from web import appeals_page

    app, client, pid = env
    await log_in(client, "anna", "pw-anna-12")
    monkeypatch.setattr(appeals_page, "MAX_CONTACTS", 4)  # the day has 5: three calls and two requests
    assert (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).status == 200  # the day stored
    for url in ("/appeals?since=2026-12-02&until=2026-12-02&kind=incoming",
                "/appeals.csv?since=2026-12-02&until=2026-12-02&kind=incoming"):
        resp = await client.get(url)
        assert resp.status == 400 and "За период около 5 контактов" in await resp.text(), url
    assert (await client.get(f"/appeals?patient={pid}")).status == 200
    assert (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).status == 200
    monkeypatch.setattr(appeals_page, "MAX_CONTACTS", 5)
    assert (await client.get("/appeals?since=2026-12-02&until=2026-12-02&kind=incoming")).status == 200
    monkeypatch.setattr(appeals_page, "MAX_STORED_CONTACTS", 4)  # from the stored days: a higher bound
    resp = await client.get("/appeals?since=2026-12-02&until=2026-12-02")
    assert resp.status == 400 and "не больше чем по 4" in await resp.text()


async def test_the_channel_directory_and_the_channel_filter(env) -> None:
    app, client, _ = env
    db = app[SERVICES].db
    await users.create_user(db, "boss", "pw-boss-12", role="settings_admin", history_access="read",
                            appeals_access=True)
    token = await log_in(client, "boss", "pw-boss-12")
    r = await client.post("/appeals/channels", data={"csrf_token": token, "group": "Агрегаторы",
                                                     "name": "НаПоправку", "kind": "service", "value": "НаПоправку"},
                          allow_redirects=False)
    assert r.status == 302
    r = await client.post("/appeals/channels", data={"csrf_token": token, "group": "Сайт", "name": "Сайт клиники",
                                                     "kind": "did", "value": "74951110001"}, allow_redirects=False)
    assert r.status == 302
    bad = await client.post("/appeals/channels/rules", data={"csrf_token": token, "channel": "1", "kind": "utm",
                                                             "value": "yandex"}, allow_redirects=False)
    assert bad.status == 400
    page = await (await client.get("/appeals/channels")).text()
    assert "Агрегаторы" in page and "НаПоправку" in page and "Номер клиники" in page
    only = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat&group=Агрегаторы")).text()
    assert only.count('<tr class="request ') == 1 and '<tr class="incoming' not in only
    assert '<option value="Агрегаторы" selected>' in only  # the form keeps what was chosen
    site = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&channel=Сайт клиники")).text()
    assert 'class="appeals-count">2<' in site and "Номер клиники: 74951110001" in site
    # #32, seed 004: «Появится всплывающее окно «Определение канала по приоритету». Сработавшее
    # правило будет выделено зеленым индикатором.»
    assert "Посмотреть правила определения канала" in site and "Определение канала по приоритету" in site
    assert '<li class="fired"><span class="fired-mark" title="Сработавшее правило">●</span> Номер клиники: 74951110001' in site
    await client.post("/logout", data={})
    await log_in(client, "anna", "pw-anna-12")  # an administrator sees the directory, cannot change it
    assert (await client.post("/appeals/channels", data={"group": "x", "name": "y"})).status == 403


async def test_an_outgoing_call_then_a_task_closed_is_a_crm_task_call(env) -> None:
    app, client, pid = env
    db = app[SERVICES].db
    out = CallRecord("9.0", "outgoing", "outgoing", "", "101", "79035551111", "", (), "101", at(15), at(15, 1),
                     at(15, 4), 5.0, 180.0, "caller", "")
    await calls.save_call(db, out)
    task = await tasks.add_task(db, pid, "Перезвонить о результатах", datetime(2026, 12, 2).date(), None)
    await tasks.complete_task(db, task, at=at(15, 10))  # 6 min after the call
    history = await db.fetchall("SELECT kind, detail FROM crm_actions WHERE patient_id = ?", (pid,))
    assert [tuple(r) for r in history] == [("booked", "2026-12-04T10:00"), ("task_done", "Перезвонить о результатах")]
    await log_in(client, "anna", "pw-anna-12")
    flat = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat&kind=outgoing")).text()
    assert "Пациент. Задача CRM" in flat


async def test_a_task_moved_from_the_panel_after_a_call_types_it_with_an_automatic_comment(env) -> None:
    """#32, seed 004: «…в течение 15 минут от звонка совершает действие: записывает на прием,
    переносит или закрывает задачу…» and «Разговор с пациентом… с автокомментариями по листу
    ожидания, задаче или оповещению о приеме». The task is moved on the card's form; a date in the
    past, a closed task and another's garbage are refused."""
    from tests.unit.panel_client import csrf

    app, client, pid = env
    db = app[SERVICES].db
    await calls.save_call(db, CallRecord("9.1", "outgoing", "outgoing", "", "101", "79035551111", "", (), "101",
                                         at(17, 50), at(17, 51), at(17, 54), 5.0, 180.0, "caller", ""))
    task = await tasks.add_task(db, pid, "Позвонить после КТ", datetime(2026, 12, 2).date(), None)
    await log_in(client, "anna", "pw-anna-12")
    card = await (await client.get(f"/patients/{pid}")).text()
    assert f'action="/tasks/{task}/move"' in card and 'aria-label="Перенести задачу «Позвонить после КТ» на"' in card
    import re

    move_form = card.split(f'action="/tasks/{task}/move"')[1].split("</form>")[0]
    assert re.search(r'name="csrf_token" value="[^"]{16,}"', move_form)  # the form posts as it is
    assert f'<input type="hidden" name="back" value="/patients/{pid}">' in move_form
    token = await csrf(client, f"/patients/{pid}")
    refused = await client.post(f"/tasks/{task}/move", data={"csrf_token": token, "due": "01.12.2026"},
                                allow_redirects=False)
    assert refused.status == 400  # the clock says 02.12.2026 18:00
    r = await client.post(f"/tasks/{task}/move", data={"csrf_token": token, "due": "09.12.2026",
                                                       "back": f"/patients/{pid}"}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == f"/patients/{pid}"
    assert db.query_now("SELECT due_date FROM tasks WHERE id = ?", (task,)) == [("2026-12-09",)]
    assert (await client.post("/tasks/999999/move", data={"csrf_token": token, "due": "09.12.2026"},
                              allow_redirects=False)).status == 404
    flat = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat&kind=outgoing")).text()
    row = flat.split('<tr class="outgoing">')[1].split("</tr>")[0]
    assert "Пациент. Задача CRM" in row and "Задача перенесена: Позвонить после КТ, 02.12.2026 → 09.12.2026" in row
    # «Разговор с пациентом» selects it
    talks = await (await client.get(f"/appeals?since=2026-12-02&until=2026-12-02&who={ap.PATIENT_TALK}")).text()
    assert "Задача перенесена" in talks
    await tasks.complete_task(db, task, at=at(18))
    assert not await tasks.move_task(db, task, datetime(2026, 12, 10).date())  # closed: nothing to move


async def test_who_and_topic_filters_and_the_seed_s_presets(env) -> None:
    """«Кто, тип» and «Тема разговора» filter the contacts; the four uses of seed 004 are one
    click each for the period shown (each link a filter the page understands)."""
    from urllib.parse import parse_qs, unquote

    app, client, _ = env
    await log_in(client, "anna", "pw-anna-12")
    day = "since=2026-12-02&until=2026-12-02"
    topic = (await comments.topics(app[SERVICES].db))[0]["name"]
    wants = await (await client.get(f"/appeals?{day}&who={ap.WANTS_BOOKING}")).text()
    assert 'class="appeals-count">1<' in wants and "Хочет на чистку" in wants  # only her commented call
    on_topic = await (await client.get(f"/appeals?{day}&topic={topic}")).text()
    assert 'class="appeals-count">1<' in on_topic
    assert 'class="appeals-count">0<' in await (await client.get(f"/appeals?{day}&topic=нет такой")).text()
    page = await (await client.get(f"/appeals?{day}")).text()
    links = [unquote(h).replace("&amp;", "&") for h in
             page.split('class="presets"')[1].split("</p>")[0].split('href="/appeals?')[1:]]
    assert len(links) == 4
    queries = [parse_qs(link.split('"')[0]) for link in links]
    assert queries[0]["level1"] == ["employee"] and queries[0]["level2"] == ["success"]
    assert all(qs["who"] == [ap.WANTS_BOOKING] and qs["since"] == ["2026-12-02"] for qs in queries)
    assert queries[1]["success"] == [ap.NOT_BOOKED] and queries[3]["level1"] == ["channel"]
    for link in links:
        assert (await client.get("/appeals?" + link.split('"')[0])).status == 200


def test_patient_talk_stands_for_the_automatic_types() -> None:
    assert ap.who_matches(ap.CRM_TASK, [ap.PATIENT_TALK]) and ap.who_matches(ap.REMINDER, [ap.PATIENT_TALK])
    assert ap.who_matches(ap.WAITING_LIST, [ap.PATIENT_TALK])
    assert not ap.who_matches(ap.WANTS_BOOKING, [ap.PATIENT_TALK])
    assert ap.who_matches(ap.WANTS_BOOKING, [ap.WANTS_BOOKING]) and not ap.who_matches("Сотрудник", [])


async def test_the_appeals_right_is_its_own(env) -> None:
    """«История обращений» is a right of its own (seed 004): administrators and directors have it
    by default, a settings admin when granted in the settings (the call history's right is
    another); the menu and the card's link follow it."""
    app, client, pid = env
    db = app[SERVICES].db
    keeper = await users.create_user(db, "keeper", "pw-keeper-12", role="settings_admin", history_access="edit")
    token = await log_in(client, "keeper", "pw-keeper-12")
    assert (await client.get("/appeals")).status == 403 and (await client.get("/appeals.csv")).status == 403
    assert (await client.get("/appeals/channels")).status == 200  # the directory is theirs to keep
    page = await (await client.get("/")).text()
    assert 'href="/appeals"' not in page and 'href="/calls"' in page
    assert "К истории обращений" not in await (await client.get(f"/patients/{pid}")).text()
    r = await client.post("/settings", data={"csrf_token": token, "action": "user", "user": str(keeper),
                                             "role": "settings_admin", "history_access": "edit",
                                             "appeals_access": "1"}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/settings#users"
    await log_in(client, "keeper", "pw-keeper-12")  # the change ended the session
    assert (await client.get("/appeals")).status == 200
    assert "К истории обращений" in await (await client.get(f"/patients/{pid}")).text()
    assert (await users.authenticate(db, "blind", "pw-blind-12")) is not None
    director = await users.create_user(db, "dir", "pw-dir-1234", role="director")
    row = await db.fetchone("SELECT appeals_access FROM users WHERE id = ?", (director,))
    assert row[0] == 1


async def test_spend_per_channel_gives_the_cost_of_an_appeal(env) -> None:
    app, client, _ = env
    db = app[SERVICES].db
    await users.create_user(db, "boss2", "pw-boss-12", role="settings_admin", appeals_access=True)
    token = await log_in(client, "boss2", "pw-boss-12")
    r = await client.post("/appeals/channels", data={"csrf_token": token, "group": "Сайт", "name": "Сайт клиники",
                                                     "kind": "did", "value": "74951110001"}, allow_redirects=False)
    assert r.status == 302
    channel = (await ad_channels.directory(db))[0]["channels"][0]["id"]
    for bad in ({"month": "2026-13", "amount": "100"}, {"month": "2026-12", "amount": "-5"},
                {"month": "2026-12", "amount": "много"}, {"month": "<b>", "amount": "1"}):
        assert (await client.post("/appeals/channels/spend", data={"csrf_token": token, "channel": str(channel)}
                                  | bad)).status == 400, bad
    r = await client.post("/appeals/channels/spend", data={"csrf_token": token, "channel": str(channel),
                                                           "month": "2026-12", "amount": "31 000"},
                          allow_redirects=False)
    assert r.status == 302
    assert "31 000 ₽" in await (await client.get("/appeals/channels")).text()
    page = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).text()
    table = page.split('class="calls report channel-costs"')[1].split("</table>")[0]
    # a day of December costs 1 000 ₽; the clinic number's two обращения (a booking among them)
    row = table.split("<td>Сайт клиники</td>")[1].split("</tr>")[0]
    assert [c.split("<")[0] for c in row.split('class="num">')[1:]] == ["2", "1", "0", "1 000 ₽", "500 ₽", "1 000 ₽", "—"]
    assert "Обращения по дням и каналам" in page


async def test_a_dialog_in_a_messenger_is_a_contact_and_a_service_rule_finds_its_channel(env) -> None:
    """#32, seed 004: «Если человек… написал во «ВКонтакте», а потом позвонил, в этом виде отчета
    обращение пациента будет учитываться один раз»; «Проверка идет сверху вниз — от UTM-меток к
    «Внешним сервисам»». A «Диалог» entered by hand names its messenger; a call the same day joins
    it; a channel rule of kind «внешний сервис» «ВКонтакте» fires for it; a made-up messenger is refused."""
    app, client, pid = env
    db = app[SERVICES].db
    await users.create_user(db, "ed", "pw-edit-123", history_access="edit")
    token = await log_in(client, "ed", "pw-edit-123")
    form_page = await (await client.get("/calls/manual")).text()
    assert '<option value="ВКонтакте" >ВКонтакте</option>' in form_page
    form = {"csrf_token": token, "kind": "dialog", "direction": "incoming", "minutes": "5",
            "phone": "+79035551111", "when": "02.12.2026 08:30"}
    bad = await client.post("/calls/manual", data=form | {"channel": "<script>"}, allow_redirects=False)
    assert bad.status == 400 and "из списка" in await bad.text()
    r = await client.post("/calls/manual", data=form | {"channel": "ВКонтакте"}, allow_redirects=False)
    assert r.status == 302
    group = await ad_channels.add_channel(db, "Соцсети", "ВК-реклама")
    await ad_channels.add_rule(db, group, ac.SERVICE, "ВКонтакте")
    flat = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat")).text()
    assert flat.count('title="Диалог (ВКонтакте)">Диалог (ВКонтакте)<') == 1
    grouped = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).text()
    hers = grouped.split(f'href="/patients/{pid}"')[0].rsplit('<tbody class="appeal">', 1)[1]
    assert "(3)</summary>" in hers and "Диалог (ВКонтакте)" in hers  # the chat, the missed call, the talk: one обращение
    assert 'class="appeals-count">4<' in grouped  # still four обращения
    cell = grouped.split(f'href="/patients/{pid}"')[1].split('<td title="Определение канала: ')[1].split("<details")[0]
    assert cell.startswith('Внешний сервис: ВКонтакте">ВК-реклама')  # the rule that fired, the channel


async def test_an_unlinked_comment_is_a_contact_of_its_own_and_deletable(env) -> None:
    app, client, _ = env
    db = app[SERVICES].db
    await users.create_user(db, "ed", "pw-edit-123", history_access="edit")
    token = await log_in(client, "ed", "pw-edit-123")
    form = {"csrf_token": token, "kind": "comment", "direction": "incoming", "minutes": "2"}
    # 10:03 near Смирнова's 10:00 call: joins it; 15:00 on a personal mobile: stands alone
    joined = await client.post("/calls/manual", data=form | {"phone": "+79035551111", "when": "02.12.2026 10:03"},
                               allow_redirects=False)
    assert joined.headers["Location"] == "/comment?call=2.0&joined=1"
    alone = await client.post("/calls/manual", data=form | {"phone": "+79035551111", "when": "02.12.2026 15:00"},
                              allow_redirects=False)
    assert alone.headers["Location"].startswith("/comment?call=manual-")
    flat = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat")).text()
    assert flat.count('<tr class="comment') == 1 and 'title="Комментарий"' in flat
    call_id = flat.split('action="/appeals/comments/')[1].split("/")[0]
    # a reader may not delete; the editor may, once
    await client.post("/logout", data={})
    reader_token = await log_in(client, "anna", "pw-anna-12")
    assert (await client.post(f"/appeals/comments/{call_id}/delete", data={"csrf_token": reader_token})).status == 403
    await client.post("/logout", data={})
    token = await log_in(client, "ed", "pw-edit-123")
    r = await client.post(f"/appeals/comments/{call_id}/delete", data={"csrf_token": token, "back": "https://evil/"},
                          allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/appeals"
    assert (await client.post(f"/appeals/comments/{call_id}/delete", data={"csrf_token": token})).status == 404
    flat = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat")).text()
    assert '<tr class="comment' not in flat


async def test_a_patient_s_message_reply_is_a_contact_of_her_appeal(env) -> None:
    app, client, pid = env
    db = app[SERVICES].db
    appt = db.query_now("SELECT id FROM appointments WHERE patient_id = ?", (pid,))[0][0]
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO escort_log (appointment_id, scenario, ts, what, outcome, detail)"
                         " VALUES (?, 'confirmation', ?, 'reply', 'accepted', 'Да, приду')", (appt, at(14)))
    await log_in(client, "anna", "pw-anna-12")
    flat = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat")).text()
    assert flat.count('<tr class="message') == 1 and "Да, приду" in flat and 'title="Сообщение пациента"' in flat
    grouped = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).text()
    assert 'class="appeals-count">4<' in grouped  # her day's calls and the reply: still one обращение
    mine = await (await client.get(f"/appeals?patient={pid}&view=flat")).text()
    assert "Да, приду" in mine


async def test_a_caller_through_a_number_that_hides_callers_has_no_number_shown(env) -> None:
    """#32, seed 000: calls via ProDoctorov «отображаются без номера телефона». «История
    обращений» and its CSV showed the number of such a caller without a card (the history, the
    API, the cards and the home page hid it)."""
    app, client, _ = env
    db = app[SERVICES].db
    await directory.hide_caller(db, "74951110002", True)
    hidden = incoming("7.0", at(15), "79038880000")
    await calls.save_call(db, dataclasses.replace(hidden, did="74951110002", callee="74951110002"))
    await log_in(client, "anna", "pw-anna-12")
    for view in ("grouped", "flat"):
        page = await (await client.get(f"/appeals?since=2026-12-02&until=2026-12-02&view={view}")).text()
        assert "номер скрыт" in page and "888-00-00" not in page and "79038880000" not in page, view
        assert "777-00-00" in page  # a stranger through the other number keeps his
    text = (await (await client.get("/appeals.csv?since=2026-12-02&until=2026-12-02&view=flat")).read()).decode()
    assert "номер скрыт" in text and "79038880000" not in text and "79037770000" in text


async def test_yellow_marks_missed_calls_and_open_requests_only(env) -> None:
    """#32, seed 004: «Желтым выделены пропущенные звонки и необработанные заявки.» An outgoing
    call nobody answered is neither: it is not yellow."""
    app, client, _ = env
    db = app[SERVICES].db
    await calls.save_call(db, CallRecord("8.0", "outgoing", "outgoing_unanswered", "", "101", "79035552222", "", (),
                                         "101", at(16), None, at(16) + 20, 20.0, 0.0, "caller", ""))
    await log_in(client, "anna", "pw-anna-12")
    page = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat")).text()
    rows = {row.split('"', 1)[0]: row for row in page.split('<tr class="')[1:]}
    assert any(k.startswith("incoming missed") for k in rows)  # the 9:00 missed call
    assert any(k.startswith("request missed") for k in rows)  # the open request
    assert [k for k in rows if k.startswith("outgoing")] == ["outgoing"]  # not yellow


def test_a_closed_waiting_list_looks_the_same_whether_an_appointment_closed_it() -> None:
    """#32, seed 004: «Светло-серый символ записи в лист ожидания — запись закрыта. Здесь не
    отображается, как именно, — с приемом или без.»"""
    import re
    from pathlib import Path

    from web.appeals_page import STATE_NAMES

    assert STATE_NAMES[ap.WAIT_BOOKED] == STATE_NAMES[ap.WAIT_CLOSED]
    css = (Path(__file__).parents[2] / "web" / "static" / "panel.css").read_text()
    colour = {state: re.search(rf"[^}}]*\.record\.{state}\b[^{{]*\{{\s*color:\s*([^;]+);", css).group(1)
              for state in ("wait_booked", "wait_closed", "void", "done")}
    assert colour["wait_booked"] == colour["wait_closed"] == colour["void"] != colour["done"]


async def test_what_the_page_shows_by_default_and_on_its_rows(env) -> None:
    """#32, seed 004's displays that were shown but not tested: today is the default period;
    a patient with no appointment before the обращение has the red «Первичный» mark; an обращение
    of several contacts opens with an arrow (details) listing them; a contact with a comment has
    the ✉ symbol; the record's hover names each record and its state; totals link to their rows."""
    import re

    _, client, pid = env
    await log_in(client, "anna", "pw-anna-12")
    default = await (await client.get("/appeals")).text()  # the clock: 2026-12-02 18:00 in Moscow
    assert 'name="since" value="02.12.2026"' in default and 'name="until" value="02.12.2026"' in default
    assert "Смирнова Анна" in default  # today's обращения, without asking for a period
    page = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).text()
    hers = page.split(f'href="/patients/{pid}"')[1].split("</tbody>")[0]
    assert '<span class="primary" title="Первичный">●</span>' in hers  # booked only during this обращение
    css = (Path(__file__).parents[2] / "web" / "static" / "panel.css").read_text()
    assert re.search(r"table\.appeals \.primary \{ color: #c62828; \}", css)  # red
    before = page.split(f'href="/patients/{pid}"')[0].rsplit('<tbody class="appeal">', 1)[1]
    assert "<details><summary>" in before and "(2)</summary>" in before  # the missed call and the talk
    assert before.count("<li ") == 2
    assert '<span title="С комментарием">✉</span>' in hers  # «Хочет на чистку» on her call
    assert '<span class="records-count">1</span>' in hers  # the record's hover: see the test below
    assert re.search(r"</span> Приём 04\.12\.2026 10:00, [^<]+</td><td>Будущий приём, не подтверждён</td>", hers)
    totals = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&level1=success")).text()
    links = re.findall(r'<tr class="level1"><td><a href="/appeals\?([^"]+)">([^<]+)</a>', totals)
    assert links and all("&amp;success=" in q for q, _ in links)
    key = links[0][1]
    narrowed = await (await client.get("/appeals?" + links[0][0].replace("&amp;", "&"))).text()
    count = re.search(r'<tr class="level1"><td><a [^>]+>' + re.escape(key) + r"</a></td><td>(\d+)</td>", totals)
    assert count and f'class="appeals-count">{count.group(1)}<' in narrowed  # the total's link shows its rows


async def test_a_dialog_request_shows_its_saved_text(env) -> None:
    """#32, seed 004: «Заявка-диалог» — what the administrator typed from a chat is the row's
    comment, in both views and the CSV."""
    app, client, _ = env
    db = app[SERVICES].db
    olga = db.query_now("SELECT id FROM users WHERE login = 'olga'")[0][0]
    await callbacks.create_request(db, callbacks.NewRequest(
        phone="+79039990002", source_name="администратора", created_by=olga,
        comment="Пишет в WhatsApp: болит зуб, просит на завтра"), at(14))
    await log_in(client, "anna", "pw-anna-12")
    for view in ("grouped", "flat"):
        page = await (await client.get(f"/appeals?since=2026-12-02&until=2026-12-02&view={view}")).text()
        row = page.split("999-00-02")[1].split("</tr>")[0]
        assert "Пишет в WhatsApp: болит зуб, просит на завтра" in row, view
    text = (await (await client.get("/appeals.csv?since=2026-12-02&until=2026-12-02&view=flat")).read()).decode()
    assert "Пишет в WhatsApp: болит зуб, просит на завтра" in text


async def test_employees_and_contractors_when_asked_for(env) -> None:
    """#32, seed 004: «снимите галочки «Сотрудник» и «Прочие и контрагенты»» — their calls are in
    the report and left out by the user's choice. By default the page counts patients only (and
    says so); choosing either type in «Кто, тип» shows them."""
    from crm import contacts

    app, client, _ = env
    db = app[SERVICES].db
    await contacts.add(db, "employee", "Врач Сидоров", "+79035553333")
    await contacts.add(db, "contractor", "Зуботехническая лаборатория", "+79035554444")
    await calls.save_call(db, incoming("9.0", at(16), "79035553333"))
    await calls.save_call(db, incoming("9.1", at(17), "79035554444"))
    await log_in(client, "anna", "pw-anna-12")
    base = "/appeals?since=2026-12-02&until=2026-12-02&view=flat"
    default = await (await client.get(base)).text()
    assert "555-33-33" not in default and "555-44-44" not in default
    assert "Звонки сотрудников и контрагентов не считаются обращениями пациентов" in default
    staff = await (await client.get(base + "&who=Сотрудник")).text()
    assert "555-33-33" in staff and "555-44-44" not in staff and "999-00-00" not in staff
    both = await (await client.get(base + "&who=Сотрудник&who=Прочие и контрагенты")).text()
    assert "555-33-33" in both and "555-44-44" in both
    assert 'class="appeals-count">2<' in both


async def test_the_record_hover_has_two_columns_and_the_card_the_same_symbols(env) -> None:
    """#32, seed 004: «Всплывающая подсказка разделена на два столбца: «В момент обращения» и
    «Текущий статус». В первом столбце находятся все приемы и записи в лист ожидания, которые
    добавил администратор. А во втором можно посмотреть, состоялся ли прием, сколько денег он
    принес, закрыли ли лист ожидания и когда.» «Эти же символы используются во вкладке «Приемы» в
    карточке пациента.»"""
    import re

    from crm.db import iso_stamp

    app, client, pid = env
    db = app[SERVICES].db
    async with db.transaction() as tx:  # a waiting-list entry added during her call, closed by her booking at 18:30
        await tx.execute("INSERT INTO waiting_list (patient_id, specialty, note, created_at, closed_at) VALUES"
                         " (?, 'Гигиенист', 'утром', ?, ?)", (pid, iso_stamp(at(10, 5)), iso_stamp(at(18, 30))))
    await log_in(client, "anna", "pw-anna-12")
    page = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).text()
    hers = page.split(f'href="/patients/{pid}"')[1].split("</tbody>")[0]
    cell = hers.split('<td class="success">')[1].split("</td>\n    <td title=")[0]
    # the main result is the most successful: a waiting list closed by an appointment beats one to come
    main = re.search(r'<span class="records" tabindex="0"><span class="record (\w+)" title="[^"]*" data-kind="(\w+)">', cell)
    assert main and main.groups() == (ap.WAIT_BOOKED, "waiting")
    assert '<span class="records-count">2</span>' in cell
    assert "<th>В момент обращения</th><th>Текущий статус</th>" in cell
    rows = re.findall(r"<tr><td>.*?</svg>\s*</span> ([^<]+)</td><td>([^<]+)</td></tr>", cell, re.S)
    doctor = db.query_now("SELECT specialty || ' ' || full_name FROM doctors WHERE id = 1")[0][0]
    assert rows == [("Лист ожидания: Гигиенист утром (добавлен 02.12.2026 10:05)",
                     "Закрыт 02.12.2026 18:30, записан на приём"),
                    (f"Приём 04.12.2026 10:00, {doctor} (добавлен 02.12.2026 10:11)", "Будущий приём, не подтверждён")]
    card = await (await client.get(f"/patients/{pid}")).text()
    appointments = card.split('<h2 id="appointments">')[1].split("</table>")[0]
    assert '<span class="record future" title="Не подтверждён" data-kind="appointment">' in appointments
    # the visit took place and brought money: the current status says so, the symbol turns dark grey
    async with db.transaction() as tx:
        await tx.execute("UPDATE appointments SET status = 'completed', price = 3500 WHERE patient_id = ?", (pid,))
    page = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).text()
    assert "Приём состоялся, 3\u00a0500\u00a0₽" in page
    card = await (await client.get(f"/patients/{pid}")).text()
    assert '<span class="record done" title="Пришёл (завершён)" data-kind="appointment">' in card


def test_a_dialog_is_blue_and_a_dialog_request_grey() -> None:
    """#32, seed 004: «Только собственно «Диалог» — это завершившееся действие…, поэтому он
    выделяется синим цветом, а «Заявка-диалог», как и заявка с сайта, еще требует совершения
    звонка пациенту, а потому выделяется серым.»"""
    import re

    css = (Path(__file__).parents[2] / "web" / "static" / "panel.css").read_text()

    def colour(kind: str) -> str:
        found = re.search(rf"[^}}]*tr\.{kind} \.contact-kind\b[^{{]*\{{\s*color:\s*([^;]+);", css)
        assert found, kind
        return found.group(1)

    assert colour("dialog") == "#1f5fbf"  # the same blue as an open waiting list
    assert colour("request_dialog") == colour("request") != colour("dialog")


async def test_the_flat_csv_has_a_row_per_contact_and_the_grouped_page_a_detail_button(env) -> None:
    """#32, seed 004: «Без группировки» — «все звонки, заявки и диалоги с пациентами, не
    сгруппированные по обращениям» (its CSV too); «чтобы развернуть строки сразу по всему отчету,
    достаточно нажать по первой строке правой кнопкой мыши → «Детализировать»»."""
    _, client, _ = env
    await log_in(client, "anna", "pw-anna-12")
    grouped = await (await client.get("/appeals.csv?since=2026-12-02&until=2026-12-02")).read()
    flat = await (await client.get("/appeals.csv?since=2026-12-02&until=2026-12-02&view=flat")).read()
    by_appeal = list(csv.reader(io.StringIO(grouped.decode("utf-8-sig")), delimiter=";"))
    by_contact = list(csv.reader(io.StringIO(flat.decode("utf-8-sig")), delimiter=";"))
    assert len(by_appeal) == 1 + 4 and len(by_contact) == 1 + 5  # Смирнова's two calls are one обращение
    head = by_contact[0]
    assert head[-2:] == ["Обращение", "Кто, тип"]
    hers = [r for r in by_contact[1:] if r[1] == "Смирнова Анна Петровна"]
    assert [r[2] for r in hers] == ["Входящий. Пропущенный", "Входящий"]
    assert {r[head.index("Обращение")] for r in hers} == {"02.12.2026 09:00"}
    assert {r[head.index("Успешность")] for r in hers} == {ap.BOOKED}
    assert hers[1][head.index("Кто, тип")] == "Пациент. Хочет записаться"
    page = await (await client.get("/appeals?since=2026-12-02&until=2026-12-02")).text()
    assert 'class="detail-all"' in page and "<table class=\"calls appeals\" data-detail>" in page
    assert 'class="detail-all"' not in await (await client.get("/appeals?since=2026-12-02&until=2026-12-02&view=flat")).text()


async def test_a_call_going_on_is_an_orange_row_not_counted(env) -> None:
    """#32, seed 004: «Вы увидите звонки, диалоги и заявки за текущий день. … Оранжевым — текущий
    звонок.» A queue call ringing two phones is one row; the talking phone named once it is
    answered; a number behind a hiding clinic number is not shown; not on another day's report."""
    import re

    from web.live import LIVE_HUB

    app, client, pid = env
    hub = app[LIVE_HUB]

    def card(linkedid: str, endpoint: str, status: str, **more: object) -> dict[str, object]:
        return {"linkedid": linkedid, "endpoint": endpoint, "status": status, "direction": "incoming",
                "since": at(17, 58), "phone": "+79035551111", "patients": [{"id": pid, "full_name": "Смирнова Анна Петровна"}],
                **more}

    hub.local["101"] = {"q.1": (card("q.1", "101", "ringing"), None)}
    hub.local["102"] = {"q.1": (card("q.1", "102", "ringing"), None),
                        "h.1": (card("h.1", "102", "talking", phone="", patients=[], since=at(17, 59)), None)}
    await log_in(client, "anna", "pw-anna-12")
    page = await (await client.get("/appeals")).text()
    rows = re.findall(r'<tr class="current">(.*?)</tr>', page, re.S)
    assert len(rows) == 2
    assert "Смирнова Анна Петровна" in rows[0] and "Входящий. Текущий" in rows[0] and "Звонит: 101, 102" in rows[0]
    assert "номер скрыт" in rows[1] and "Разговор: 102" in rows[1]
    assert 'class="appeals-count">4<' in page  # not an обращение yet
    hub.local["101"] = {"q.1": (card("q.1", "101", "talking"), None)}
    page = await (await client.get("/appeals")).text()
    assert "Разговор: 101" in re.findall(r'<tr class="current">(.*?)</tr>', page, re.S)[0]
    assert '<tr class="current">' not in await (await client.get("/appeals?since=2026-12-01&until=2026-12-01")).text()
    css = (Path(__file__).parents[2] / "web" / "static" / "panel.css").read_text()
    assert re.search(r"table\.appeals tr\.current td \{ background: #ffe0b2; \}", css)  # orange

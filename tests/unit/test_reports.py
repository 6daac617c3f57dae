"""The call reports of seed 000 on stored calls: who missed what under ring-all and linear
queues, conversion with missed calls counted, employees' calls left out, the clinic's days,
missed calls processed within 24 hours (and by whom), tags including a deleted group's;
the page's rights, filters and CSV."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import calls, reports, schedule, shifts, tags, users
from crm.call_listing import CallFilter
from crm.clock import SettableClock
from crm.demo import load_demo
from crm.rules.call_records import CallRecord, LegRecord
from pbx.app import SERVICES, build_app
from tests.unit.panel_client import log_in, offline_settings

TZ = ZoneInfo("Europe/Moscow")
PETROVA = "79161234567"
EMPLOYEE = "79057778899"
STRANGER = "79035550000"


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ).timestamp()


def leg(ext: str, lid: str, t0: float, outcome: str, missed: bool = False) -> LegRecord:
    answered = t0 + 3 if outcome == "answered" else None
    return LegRecord(ext, f"{lid}.{ext}", outcome, t0, answered, t0 + 20, missed)


def incoming(lid: str, t0: float, caller: str, legs: tuple[LegRecord, ...], talk: float = 60.0) -> CallRecord:
    answered = next((lg.endpoint for lg in legs if lg.outcome == "answered"), "")
    return CallRecord(lid, "incoming", "incoming" if answered else "missed", "74951110001", caller,
                      "74951110001", "reception", legs, answered, t0, t0 + 3 if answered else None,
                      t0 + 3 + (talk if answered else 17), 3.0, talk if answered else 0.0, "caller", "")


def outgoing(lid: str, t0: float, ext: str, callee: str, answered: bool, talk: float = 30.0) -> CallRecord:
    return CallRecord(lid, "outgoing", "outgoing" if answered else "outgoing_unanswered", "", ext, callee,
                      "", (), ext, t0, t0 + 5 if answered else None, t0 + 5 + (talk if answered else 25),
                      5.0, talk if answered else 0.0, "caller", "")


@pytest.fixture
async def app(tmp_path: Path, storage_setting: dict):
    clock = SettableClock(at(23, 12))
    application = build_app(offline_settings(tmp_path, **storage_setting), clock=clock)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    db = application[SERVICES].db
    await load_demo(db, now=at(1, 9), robot_patients=False)
    anna = await users.create_user(db, "anna", "pw", full_name="Анна Админова")
    olga = await users.create_user(db, "olga", "pw", full_name="=Ольга")  # a formula in a CSV
    boss = await users.create_user(db, "boss", "pw", full_name="Директор", role="director")
    since = datetime(2026, 11, 1, tzinfo=UTC).isoformat(timespec="milliseconds")
    await shifts.bind(db, anna, "101", since)
    await shifts.bind(db, olga, "102", since)
    t = at(20, 10)
    records = [
        # ring-all, 101 answered: nobody's miss; booked from this call
        incoming("1.0", t, PETROVA, (leg("101", "1.0", t, "answered"), leg("102", "1.0", t, "answered_elsewhere"))),
        # linear: 101 did not take it, 102 did: not 101's miss
        incoming("2.0", t + 600, STRANGER, (leg("101", "2.0", t + 600, "no_answer"),
                                            leg("102", "2.0", t + 615, "answered"))),
        # nobody answered: both phones missed it; Anna calls back 2 hours later
        incoming("3.0", t + 1200, STRANGER, (leg("101", "3.0", t + 1200, "no_answer", True),
                                             leg("102", "3.0", t + 1200, "no_answer", True))),
        outgoing("4.0", t + 1200 + 7200, "101", STRANGER, answered=True),
        outgoing("5.0", t + 9000, "101", "79990001122", answered=False),
        # an employee's call: out of every report (seed 001)
        incoming("6.0", t + 9600, EMPLOYEE, (leg("101", "6.0", t + 9600, "answered"),)),
        # a missed call nobody returned (more than a day ago) and one from an hour ago
        incoming("7.0", at(21, 10), "79990003344", (leg("102", "7.0", at(21, 10), "no_answer", True),)),
        incoming("8.0", at(23, 11), "79990005566", (leg("101", "8.0", at(23, 11), "no_answer", True),)),
        # 01:30 Moscow on the 22nd is still the 21st in UTC
        incoming("9.0", at(22, 1, 30), PETROVA, (leg("102", "9.0", at(22, 1, 30), "answered"),)),
    ]
    for r in records:
        await calls.save_call(db, r)
    await schedule.book(db, patient_id=1, doctor_id=1, starts_at=datetime(2026, 11, 25, 10, tzinfo=TZ),
                        minutes=30, now=t + 30, call_linkedid="1.0")
    group = await tags.create_group(db, "Почему не записался")
    expensive = await tags.add_tag(db, group, "Дорого")
    await tags.set_tags(db, "2.0", [expensive], "Спросил про МРТ", anna)
    await tags.set_tags(db, "4.0", [expensive], "", anna)
    await tags.delete_group(db, group)  # tags already set stay in reports
    await tags.mark_prompted(db, "5.0", anna)  # closed without a tag: the history's dash
    yield application, server, {"anna": anna, "olga": olga, "boss": boss}
    await server.close()


def period(first: int, last: int) -> CallFilter:
    since = datetime(2026, 11, first, tzinfo=TZ).astimezone(UTC).isoformat(timespec="milliseconds")
    until = datetime(2026, 11, last + 1, tzinfo=TZ).astimezone(UTC).isoformat(timespec="milliseconds")
    return CallFilter(since=since, until=until)


async def test_admin_efficiency_follows_the_seed_rules(app) -> None:
    application, _, ids = app
    rows = {r.name: r for r in await reports.admin_efficiency(application[SERVICES].db, period(20, 23), TZ)}
    anna, olga = rows["Анна Админова"], rows["=Ольга"]
    # Anna: answered 1.0 (booked), missed 3.0 and 8.0, called back 4.0, 5.0 unanswered; 6.0 is an employee
    assert (anna.answered, anna.missed, anna.outgoing, anna.outgoing_unanswered) == (1, 2, 1, 1)
    assert anna.total == 5 and anna.booked == 1 and anna.conversion == 20.0
    assert anna.talk_seconds == 90.0 and anna.average_talk == 45.0
    assert anna.missed_share == pytest.approx(66.7) and anna.unanswered_share == 50.0
    # Olga: answered 2.0 and 9.0, missed 3.0 and 7.0; not a miss for 1.0 (Anna answered it)
    assert (olga.answered, olga.missed, olga.outgoing, olga.booked) == (2, 2, 0, 0)
    assert olga.conversion == 0.0 and olga.unanswered_share is None
    only = await reports.admin_efficiency(application[SERVICES].db,
                                          CallFilter(since=period(20, 23).since, until=period(20, 23).until,
                                                     user_id=ids["olga"]), TZ)
    assert [r.name for r in only] == ["=Ольга"]


async def test_calls_per_day_on_the_clinic_s_days(app) -> None:
    application, _, _ = app
    rows = await reports.calls_per_day(application[SERVICES].db, period(19, 23), TZ)
    by_day = {r.day.day: r for r in rows}
    assert sorted(by_day) == [19, 20, 21, 22, 23]  # empty days are shown too
    assert by_day[19].total == 0
    d20 = by_day[20]
    assert (d20.incoming, d20.missed, d20.outgoing, d20.outgoing_unanswered, d20.booked) == (2, 1, 1, 1, 1)
    assert by_day[21].missed == 1 and by_day[22].incoming == 1  # 01:30 local belongs to the 22nd
    assert by_day[23].missed == 1
    did = CallFilter(since=period(19, 23).since, until=period(19, 23).until, did="74951110002")
    assert sum(r.total for r in await reports.calls_per_day(application[SERVICES].db, did, TZ)) == 0


async def test_missed_calls_processed_within_a_day(app) -> None:
    application, _, _ = app
    total, days = await reports.missed_processing(application[SERVICES].db, period(20, 23), TZ, at(23, 12))
    assert (total.missed, total.called_back, total.got_through, total.pending, total.unprocessed) == (3, 1, 0, 1, 1)
    assert total.processed_share == pytest.approx(33.3) and total.median_minutes == 120.0
    assert [d.day for d, _ in days] == [20, 21, 23]
    # the next day the recent one has had its 24 hours: unprocessed for good
    later, _ = await reports.missed_processing(application[SERVICES].db, period(20, 23), TZ, at(24, 12))
    assert (later.pending, later.unprocessed) == (0, 2)


async def test_tags_keep_a_deleted_group(app) -> None:
    application, _, _ = app
    result = await reports.tag_counts(application[SERVICES].db, period(20, 23), TZ)
    assert result["tagged_calls"] == 2 and result["closed_without_tag"] == 1
    assert result["groups"]["Почему не записался (группа удалена)"] == [{"label": "Дорого", "calls": 2, "share": 100.0}]
    assert result["groups"]["Другая метка"] == [{"label": "Спросил про МРТ", "calls": 1, "share": 50.0}]


async def login(server: TestServer, name: str) -> TestClient:
    client = TestClient(server)
    await client.start_server()
    await log_in(client, name, "pw")
    return client


async def test_reports_page_rights_filters_and_csv(app) -> None:
    _, server, _ = app
    admin = await login(server, "anna")
    assert (await admin.get("/reports")).status == 403
    assert (await admin.get("/reports.csv")).status == 403
    boss = await login(server, "boss")
    page = await (await boss.get("/reports?report=efficiency&since=2026-11-20&until=2026-11-23")).text()
    assert "Анна Админова" in page and "20,0 %" in page
    days = await (await boss.get("/reports?report=days&since=2026-11-20&until=2026-11-22")).text()
    assert days.count("<tr><td>2") == 3  # 20, 21, 22 November
    # the chart draws the same figures as the table: a column per day, each series' value
    from tests.unit.test_charts import values

    table = days[days.index('<table class="calls report days">'):]
    rows = re.findall(r"<tr><td>(\d\d)\.11\.2026</td><td class=\"total\">\d+</td><td>(\d+)</td>"
                      r"<td class=\"missed\">(\d+)</td><td>(\d+)</td>", table)
    assert days.count('<g class="column">') == 3 and len(rows) == 3
    assert values(days, "incoming") == [int(r[1]) for r in rows if int(r[1])]
    assert values(days, "missed") == [int(r[2]) for r in rows if int(r[2])]
    assert values(days, "outgoing") == [int(r[3]) for r in rows if int(r[3])]
    assert any(int(r[1]) or int(r[2]) or int(r[3]) for r in rows)  # there are figures to draw
    assert 'class="bar"' in page  # the efficiency report's bars
    missed = await (await boss.get("/reports?report=missed&since=2026-11-20&until=2026-11-23")).text()
    assert 'class="unprocessed">1<' in missed
    tag_page = await (await boss.get("/reports?report=tags&since=2026-11-20&until=2026-11-23")).text()
    assert "Дорого" in tag_page and "(группа удалена)" in tag_page
    for bad in ("report=nope", "since=вчера", "since=2026-11-23&until=2026-11-20", "since=2020-01-01&until=2026-11-20"):
        assert (await boss.get(f"/reports?{bad}")).status == 400, bad
    resp = await boss.get("/reports.csv?report=efficiency&since=2026-11-20&until=2026-11-23")
    body = (await resp.read()).decode("utf-8")
    assert body.startswith("\ufeffСотрудник;") and "'=Ольга" in body and "\n=Ольга" not in body
    assert resp.headers["Content-Disposition"] == 'attachment; filename="report-efficiency.csv"'
    await admin.close()  # closes the test server too
    await boss.close()

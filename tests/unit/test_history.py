"""The call history page: rights, filters (missed processed / unprocessed), escaping, CSV,
and recording playback (Range, no path traversal)."""

from __future__ import annotations

import wave
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import calls, patients, users
from crm.rules.call_records import CallRecord, LegRecord
from pbx.app import SERVICES, build_app
from pbx.settings import AsteriskSettings, Settings, with_generated_secrets
from tests.unit.panel_client import log_in

T0 = 1795300000.0


def rec(lid: str, t0: float, caller: str, kind: str, recording: str = "") -> CallRecord:
    answered = kind != "missed"
    leg = LegRecord("101", lid + ".1", "answered" if answered else "no_answer", t0,
                    t0 + 2 if answered else None, t0 + 9, not answered)
    direction = "outgoing" if kind == "outgoing" else "incoming"
    return CallRecord(lid, direction, kind, "" if direction == "outgoing" else "74951110001",
                      "101" if direction == "outgoing" else caller,
                      caller if direction == "outgoing" else "74951110001", "", (leg,),
                      "101" if answered else "", t0, t0 + 2 if answered else None, t0 + 9,
                      2.0, 7.0 if answered else 0.0, "caller", recording)


@pytest.fixture
async def app(tmp_path: Path, storage_setting: dict):
    asterisk = AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0)
    settings = with_generated_secrets(Settings(state_dir=tmp_path, asterisk=asterisk, **storage_setting))
    application = build_app(settings)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    db = application[SERVICES].db
    await patients.add_patient(db, "<script>alert(1)</script>", "=cmd", phone_numbers=("+79161234567",))
    # a missed call called back 2 hours later (processed), one never called back (unprocessed)
    await calls.save_call(db, rec("100.0", T0, "79161234567", "missed"))
    await calls.save_call(db, rec("101.0", T0 + 7200, "79161234567", "outgoing"))
    await calls.save_call(db, rec("200.0", T0 + 100, "79035550000", "missed"))
    settings.recordings_dir.mkdir(parents=True)
    with wave.open(str(settings.recordings_dir / "300.0.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\x01\x02" * 8000)
    await calls.save_call(db, rec("300.0", T0 + 200, "79161234567", "incoming", "300.0.wav"))
    await calls.save_call(db, rec("400.0", T0 + 300, "79161234567", "incoming", "../../secrets.json"))
    await users.create_user(db, "reader", "pw", history_access="read")
    nobody = await users.create_user(db, "nobody", "pw")
    async with db.transaction() as tx:
        await tx.execute("UPDATE users SET history_access = 'none' WHERE id = ?", (nobody,))
    yield application, server
    await server.close()


async def client_for(server: TestServer, login: str) -> TestClient:
    c = TestClient(server)
    await c.start_server()
    await log_in(c, login, "pw")
    return c


def call_id(app, linkedid: str) -> int:
    return app[SERVICES].db.query_now("SELECT id FROM calls WHERE linkedid = ?", (linkedid,))[0][0]


async def test_history_filters_and_escaping(app) -> None:
    application, server = app
    c = await client_for(server, "reader")
    page = await (await c.get("/calls")).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    unprocessed = await (await c.get("/calls?type=missed_unprocessed")).text()
    processed = await (await c.get("/calls?type=missed_processed")).text()
    assert "+79035550000" in unprocessed and unprocessed.count("<tr class=\"missed\">") == 1
    assert processed.count("<tr class=\"missed\">") == 1 and "+79161234567" in processed
    assert "Нет в базе" in unprocessed
    bad = await (await c.get("/calls?since=вчера")).text()
    assert "since/until" in bad
    await c.close()


async def test_csv_export(app) -> None:
    _, server = app
    c = await client_for(server, "reader")
    resp = await c.get("/calls.csv?type=missed")
    body = (await resp.read()).decode("utf-8")
    assert resp.headers["Content-Disposition"].startswith("attachment")
    assert body.startswith("\ufeffДата и время")
    assert "'<script>" not in body and "Пропущенный" in body
    await c.close()


async def test_recording_playback_with_range_and_rights(app) -> None:
    application, server = app
    c = await client_for(server, "reader")
    good = call_id(application, "300.0")
    full = await c.get(f"/recordings/{good}")
    assert full.status == 200 and len(await full.read()) == 44 + 16000
    part = await c.get(f"/recordings/{good}", headers={"Range": "bytes=0-99"})
    assert part.status == 206 and len(await part.read()) == 100
    evil = call_id(application, "400.0")
    assert (await c.get(f"/recordings/{evil}")).status == 404  # no path traversal
    assert (await c.get("/recordings/99999")).status == 404
    n = await client_for(server, "nobody")
    assert (await n.get("/calls")).status == 403
    assert (await n.get(f"/recordings/{good}")).status == 403
    anon = TestClient(server)
    await anon.start_server()
    resp = await anon.get(f"/recordings/{good}", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/login"
    for client in (c, n, anon):
        await client.session.close()


async def test_times_and_days_are_the_clinic_s(app) -> None:
    application, server = app
    # 22:30 UTC on the 30th is 01:30 on 1 December in Moscow (the clinic's zone)
    late = datetime(2026, 11, 30, 22, 30, tzinfo=UTC).timestamp()
    await calls.save_call(application[SERVICES].db, rec("500.0", late, "79990001122", "incoming"))
    c = await client_for(server, "reader")
    december = await (await c.get("/calls?since=2026-12-01&until=2026-12-01")).text()
    assert "01.12.2026 01:30" in december and "+7 999 000-11-22" in december
    november = await (await c.get("/calls?since=2026-11-30&until=2026-11-30")).text()
    assert "+79990001122" not in november
    body = (await (await c.get("/calls.csv?since=2026-12-01&until=2026-12-01")).read()).decode()
    assert "2026-12-01 01:30:00" in body
    await c.close()


async def test_the_csv_has_every_call_of_the_period_each_once(app) -> None:
    application, server = app
    db = application[SERVICES].db
    from zoneinfo import ZoneInfo

    base = datetime(2026, 11, 25, 8, 0, tzinfo=ZoneInfo("Europe/Moscow")).timestamp()  # 2,500 calls till 10:20

    for i in range(2500):  # three calls a start: the pages' boundaries fall inside such ties
        await calls.save_call(db, rec(f"5{i:05d}.0", base + i // 3 * 10, f"7903{i:07d}", "incoming"))
    c = TestClient(server)
    await log_in(c, "reader", "pw")
    day = "2026-11-25"
    body = (await (await c.get(f"/calls.csv?since={day}&until={day}")).read()).decode()
    lines = body.lstrip("\ufeff").splitlines()
    numbers = [ln.split(";")[2] for ln in lines[1:]]
    assert len(numbers) == 2500 and len(set(numbers)) == 2500  # all of them, none twice
    assert numbers[0] == "+79030002499" and numbers[-1] == "+79030000000"  # newest first
    await c.close()


async def test_the_history_pages_to_older_calls_each_once(app) -> None:
    """A page shows 100 calls and links the older ones: following the links shows every call of
    the filter once, newest first, though calls are saved meanwhile; the CSV link keeps the
    filter, not the page."""
    import re
    from html import unescape

    application, server = app
    db = application[SERVICES].db
    for i in range(230):  # two calls a start: page boundaries fall inside ties
        await calls.save_call(db, rec(f"7{i:04d}.0", T0 + 86400 + i // 2 * 60, f"7904{i:07d}", "incoming"))
    c = TestClient(server)
    await log_in(c, "reader", "pw")
    url, seen, pages = "/calls?q=7904", [], 0
    while url:
        html = await (await c.get(url)).text()
        seen += re.findall(r"\+7 904 \d{3}-\d{2}-\d{2}", html)
        older = re.search(r'<a href="(/calls\?[^"]*)" class="older">', html)
        csv_link = re.search(r'<a href="/calls\.csv\?([^"]*)">', html)
        assert csv_link and "cursor" not in csv_link.group(1) and "q=7904" in csv_link.group(1)
        url = unescape(older.group(1)) if older else ""
        pages += 1
        if pages == 1:  # a newer call saved while the user reads: it neither repeats nor shifts rows
            await calls.save_call(db, rec("79999.0", T0 + 3 * 86400, "79049999999", "incoming"))
            assert "К новым" not in html
        else:
            assert "К новым" in html
    assert pages == 3 and len(seen) == 230 and len(set(seen)) == 230, [s for s in seen if seen.count(s) > 1 or "999" in s]
    assert seen[0] == "+7 904 000-02-29" and seen[-1] == "+7 904 000-00-00"
    await c.close()


@pytest.mark.parametrize("ranges", ["bytes=-100", "bytes=1-", "bytes=5-10"])
async def test_a_recording_is_never_taken_without_an_audit_record(app, ranges: str) -> None:
    """#30: ``Range: bytes=-N`` or ``bytes=1-`` returned the file and wrote no «прослушал запись»
    row (only a range starting at 0 was traced). Now the first fetch of any range is audited, and
    a player's further pieces of the same listening are not audited again."""
    application, server = app
    db = application[SERVICES].db
    c = await client_for(server, "reader")
    good = call_id(application, "300.0")
    before = await db.fetchone("SELECT COUNT(*) FROM audit_log WHERE action = 'recording_play'")
    part = await c.get(f"/recordings/{good}", headers={"Range": ranges})
    assert part.status == 206 and await part.read()
    more = await c.get(f"/recordings/{good}", headers={"Range": "bytes=0-99"})  # the same player goes on
    assert more.status == 206
    after = await db.fetchone("SELECT COUNT(*) FROM audit_log WHERE action = 'recording_play'")
    assert after[0] == before[0] + 1
    await c.close()


async def test_exports_errors_and_redirects_carry_the_security_headers(app) -> None:
    """#30 (Low): streamed CSV exports went out without ``no-store``, and errors and redirects
    without the hardening headers (a middleware never saw them)."""
    _, server = app
    c = await client_for(server, "reader")
    csv = await c.get("/calls.csv?type=missed")
    missing = await c.get("/recordings/99999")
    anon = TestClient(server)
    await anon.start_server()
    redirect = await anon.get("/calls", allow_redirects=False)
    assert (csv.status, missing.status, redirect.status) == (200, 404, 302)
    for resp in (csv, missing, redirect):
        assert resp.headers["Cache-Control"] == "no-store", resp
        assert resp.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in resp.headers[
            "Content-Security-Policy"]
    for client in (c, anon):
        await client.session.close()

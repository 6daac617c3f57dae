"""What a person (or a probe) can type into a page's query string or form: dates in year 1 or
9999, nonsense, numbers beyond SQLite's 64-bit integers. Each gets a clear answer (a 400, a
message or the default day), never a server error."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import users
from crm.demo import load_demo
from pbx.app import SERVICES, build_app
from tests.unit.panel_client import log_in, offline_settings

PAGES = ("/calls", "/calls.csv", "/reports", "/reports.csv", "/reports/escort", "/schedule", "/booking",
         "/escort", "/tasks", "/api/v1/calls", "/appeals", "/appeals.csv", "/callbacks", "/audit")
QUERIES = ("since=0001-01-01&until=0001-01-01", "since=9999-12-31&until=9999-12-31", "date=0001-01-01",
           "since=31.02.2026&until=01.03.2026", "date=00.00.0000", "date=25.11.2026&week=-1",
           "date=25.11.2026&week=99999999999999999999", "since=01.01.0001&until=31.12.9999",
           "date=9999-12-31", "day=9999-12-31", "day=0001-01-01", "since=2026-01-01T25:00", "date=x",
           "report=days&since=0001-01-01&until=0001-12-31", "since=2026-11-01T10:00:00%2B99:00")


@pytest.fixture
async def client(tmp_path: Path, storage_setting: dict):
    app = build_app(offline_settings(tmp_path, **storage_setting))
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        db = app[SERVICES].db
        await load_demo(db)
        await users.create_user(db, "boss", "pw", role="director")
        yield c, await log_in(c, "boss", "pw")


async def test_no_date_in_a_query_string_breaks_a_page(client) -> None:
    c, _ = client
    failures = []
    for path in PAGES:
        for q in QUERIES:
            status = (await c.get(f"{path}?{q}")).status
            if status >= 500:
                failures.append(f"{status} {path}?{q}")
    assert not failures


async def test_absurd_dates_in_forms_are_refused(client) -> None:
    c, token = client
    booking = await c.post("/booking", data={"csrf_token": token, "patient": "1", "doctor": "1",
                                             "slot": "9999-12-31T23:30"})
    assert booking.status < 500 and "Неверное время приёма" in await booking.text()
    task = await c.post("/tasks", data={"csrf_token": token, "title": "Позвонить", "due": "0001-01-01"})
    assert task.status == 400
    patient = await c.post("/patients/new", data={"csrf_token": token, "last_name": "Тестов",
                                                  "first_name": "Тест", "birth_date": "0001-01-01"})
    assert patient.status < 500 and "Неверная дата рождения" in await patient.text()


async def test_an_id_beyond_64_bits_is_no_such_record(client) -> None:
    c, token = client
    resp = await c.post("/escort/call-now", data={"csrf_token": token, "appointment": "9" * 30},
                        allow_redirects=False)
    assert resp.status == 400 and "Нет такой записи" in await resp.text()


HOSTILE = ("", "0", "-1", "9" * 30, "1e309", "nan", "x" * 5000, "\x00", "<script>", "9999-12-31T23:59",
           "0001-01-01", "2026-11-23T10:00", "+7 (916) 123-45-67", "../../etc/passwd", "1", "2", "101", "none",
           "robot", "on", "ё" * 300)
FIELDS = ("patient", "doctor", "slot", "date", "minutes", "comment", "title", "due", "specialty", "note",
          "number", "phone", "call", "caller_type", "topic", "text", "when", "direction", "status", "back",
          "extension", "last_name", "first_name", "birth_date", "name", "group", "tag", "action", "login",
          "password", "role", "history_access", "appointment", "confirmation_mode", "retries", "retry_minutes",
          "max_concurrent_calls", "caller_id", "start", "end", "weekday", "user", "did", "queue", "workstation",
          "choice", "since", "until", "type", "q", "limit", "offset", "employee", "converted", "report", "day")


async def test_random_hostile_forms_never_break_a_page(client) -> None:
    """Every POST and GET route of the panel with random fields of hostile values (a fixed
    seed: a failure reproduces)."""
    c, token = client
    app = c.server.app
    rnd = random.Random(20261122)
    failures = set()
    for route in sorted({(r.method, r.resource.canonical) for r in app.router.routes() if r.method in ("GET", "POST")}):
        method, path = route[0], route[1].replace("{id}", "1").replace("{token}", "abc")
        if path in ("/live", "/logout", "/shift") or path.startswith("/static"):
            continue  # a stream; the session's end; the phone binding (tested on its own)
        for _ in range(40):
            fields = {f: rnd.choice(HOSTILE) for f in rnd.sample(FIELDS, rnd.randint(1, 10))}
            if method == "POST":
                resp = await c.post(path, data=fields | {"csrf_token": token}, allow_redirects=False)
            else:
                resp = await c.get(path, params=fields, allow_redirects=False)
            if resp.status >= 500 and not (path == "/api/v1/health" and resp.status == 503):
                failures.add(f"{resp.status} {method} {path}")
    assert not failures


async def test_raw_cyrillic_in_a_query_string_is_a_400_without_a_traceback(client, caplog) -> None:
    """A hand-typed URL with unencoded Cyrillic: aiohttp's parser refuses it with a 400 and
    used to log a full traceback at ERROR for it."""
    import asyncio
    import logging

    c, _ = client
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection("127.0.0.1", c.server.port)
    writer.write("GET /calls?q=Иванов HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.read(100), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.0 400") or head.startswith(b"HTTP/1.1 400"), head
    server_lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert server_lines and all(r.levelno == logging.WARNING and not r.exc_info for r in server_lines)
    assert "refused with 400" in server_lines[0].getMessage()
    assert "Invalid char in url query" in server_lines[0].getMessage()

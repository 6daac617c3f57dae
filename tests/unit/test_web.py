"""Panel basics with aiohttp's test client: login, CSRF, escaping, health."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import users
from pbx.app import SERVICES, build_app
from pbx.settings import AsteriskSettings, Settings, with_generated_secrets


@pytest.fixture
async def client(tmp_path: Path, storage_setting: dict):
    # Nothing listens on these ports: the adapters keep retrying in the background.
    asterisk = AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0)
    settings = with_generated_secrets(Settings(state_dir=tmp_path, asterisk=asterisk, **storage_setting))
    settings = dataclasses.replace(settings, clinic_name="<b>Клиника</b>")
    app = build_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        await users.create_user(app[SERVICES].db, "anna", "верный-пароль", full_name="Анна")
        yield c


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


async def test_login_flow_and_csrf(client: TestClient) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/login"
    page = await (await client.get("/login")).text()
    assert "&lt;b&gt;Клиника&lt;/b&gt;" in page  # autoescape: no HTML injection
    token = csrf_of(page)
    no_csrf = await client.post("/login", data={"login": "anna", "password": "верный-пароль"})
    assert no_csrf.status == 403
    wrong = await client.post("/login", data={"login": "anna", "password": "x", "csrf_token": token})
    assert wrong.status == 401 and "Неверный логин или пароль" in await wrong.text()
    ok = await client.post(
        "/login", data={"login": "anna", "password": "верный-пароль", "csrf_token": token},
        allow_redirects=False,
    )
    assert ok.status == 302
    first = await client.get("/", allow_redirects=False)  # the first page of the day asks for
    assert first.headers["Location"] == "/shift"  # the shift phone
    shift_page = await (await client.get("/shift")).text()
    assert "Не работаю сейчас с телефонией" in shift_page
    done = await client.post("/shift", data={"extension": "none", "csrf_token": csrf_of(shift_page)},
                             allow_redirects=False)
    assert done.status == 302
    home = await client.get("/")
    assert home.status == 200 and "Состояние телефонии" in await home.text()


async def test_health_reports_components(client: TestClient) -> None:
    resp = await client.get("/api/v1/health")
    body = await resp.json()
    assert resp.status == 503  # no Asterisk in this test
    assert body["db"] is True and body["ami"] is False and body["ok"] is False

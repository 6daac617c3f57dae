"""#30, passwords below ASVS L2 no more: at least 12 characters and not easy to guess; a user
changes their own with the current one; an admin's reset or a new account gets a one-time
password that opens nothing but the change page, and the admin never learns the new one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import users
from crm.rules.passwords import password_problem
from pbx.app import SERVICES, Adapters, build_app
from tests.unit.panel_client import csrf, log_in, offline_settings


@pytest.mark.parametrize(("password", "why"), [
    ("short-1A", "короче 12"), ("password1234", "частых"), ("qwertyuiop12", "частых"), ("aaaaaaaaaaaa", "частых"),
    ("123456789012", "частых"), ("anna-and-her-cat-7", "логин"), ("x" * 201, "длиннее"),
])
def test_a_weak_password_is_refused_with_its_reason(password: str, why: str) -> None:
    assert why in password_problem(password, "anna", "Анна Петрова")


def test_a_good_password_passes() -> None:
    for good in ("длинный-пароль-1", "Pa55-word-x9!k", "correct horse battery staple"):
        assert password_problem(good, "anna", "Анна Петрова") == ""


async def test_a_reset_gives_a_one_time_password_that_opens_only_the_change_page(tmp_path: Path) -> None:
    app = build_app(offline_settings(tmp_path), run_escort=False, adapters=Adapters.offline())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    boss, anna = TestClient(server), TestClient(server)
    try:
        db = app[SERVICES].db
        await users.create_user(db, "boss", "pw-boss-123", role="settings_admin")
        await log_in(boss, "boss", "pw-boss-123")
        # a new account: the admin types no password, the page shows a one-time one once
        r = await boss.post("/settings", data={"action": "user_add", "login": "anna", "full_name": "Анна Петрова",
                                               "role": "administrator", "csrf_token": await csrf(boss, "/settings")})
        page = await r.text()
        one_time = re.search(r'data-one-time="anna">.*?class="password">([a-z0-9-]+)<', page, re.S).group(1)
        assert r.status == 200 and len(one_time) == 23
        assert one_time not in await (await boss.get("/settings")).text()

        await anna.post("/login", data={"login": "anna", "password": one_time, "csrf_token": await csrf(anna, "/login")})
        r = await anna.get("/patients", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/password"
        page = await (await anna.get("/password")).text()
        assert 'data-forced="1"' in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert (await anna.post("/comment", data={"csrf_token": token})).status == 403
        # the current password is asked; a weak new one is refused; a good one opens the panel
        wrong = await anna.post("/password", data={"current": "guess", "password": "длинный-пароль-1",
                                                   "again": "длинный-пароль-1", "csrf_token": token})
        assert wrong.status == 403
        weak = await anna.post("/password", data={"current": one_time, "password": "password1234",
                                                  "again": "password1234", "csrf_token": token})
        assert weak.status == 400 and "частых" in await weak.text()
        done = await anna.post("/password", data={"current": one_time, "password": "длинный-пароль-1",
                                                  "again": "длинный-пароль-1", "csrf_token": token}, allow_redirects=False)
        assert done.status == 302
        # this session goes on: the day's shift question, then the panel
        assert (await anna.get("/patients", allow_redirects=False)).headers["Location"] == "/shift"
        await anna.post("/shift", data={"extension": "none", "csrf_token": token})
        assert (await anna.get("/patients", allow_redirects=False)).status == 200
        assert await users.authenticate(db, "anna", "длинный-пароль-1") is not None
        assert await users.authenticate(db, "anna", one_time) is None

        # a reset by the admin: a new one-time password, anna's sessions end
        anna_id = (await db.fetchone("SELECT id FROM users WHERE login = 'anna'"))[0]
        r = await boss.post("/settings", data={"action": "user_password", "user": str(anna_id),
                                               "csrf_token": await csrf(boss, "/settings")})
        again = re.search(r'class="password">([a-z0-9-]+)<', await r.text()).group(1)
        assert again != one_time
        assert (await anna.get("/patients", allow_redirects=False)).headers["Location"] == "/login"
        row = await db.fetchone("SELECT must_change_password FROM users WHERE id = ?", (anna_id,))
        assert row[0] == 1 and await users.authenticate(db, "anna", again) is not None
        actions = [r[0] for r in await db.fetchall("SELECT action FROM audit_log WHERE action LIKE 'password%'")]
        assert actions == ["password_change_failed", "password_change"]
    finally:
        await boss.session.close()
        await anna.session.close()
        await server.close()

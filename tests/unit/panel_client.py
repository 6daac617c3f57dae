"""The panel in handler tests: settings without Asterisk, and logging a test client in the way
a browser does (the login form's CSRF token, then the shift dialog of the day's first page,
answered with a phone or "none")."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from pbx.settings import AsteriskSettings, Settings, with_generated_secrets

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def csrf(client: TestClient, path: str = "/shift") -> str:
    match = CSRF.search(await (await client.get(path)).text())
    assert match, f"no CSRF token on {path}"
    return match.group(1)


async def log_in(client: TestClient, login: str, password: str, phone: str = "none") -> str:
    """Returns the session's CSRF token."""
    await client.post("/login", data={"login": login, "password": password, "csrf_token": await csrf(client, "/login")})
    token = await csrf(client)
    await client.post("/shift", data={"extension": phone, "csrf_token": token})
    return token


def offline_settings(state_dir: Path, **overrides: Any) -> Settings:
    """Settings for a panel without Asterisk (AMI/ARI on a closed port, no FastAGI)."""
    asterisk = AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0)
    return with_generated_secrets(Settings(state_dir=state_dir, asterisk=asterisk, **overrides))


@asynccontextmanager
async def settings_admin_panel(state_dir: Path) -> AsyncIterator[tuple[Any, TestClient]]:
    """A panel without Asterisk and a settings admin logged in: (its database, the client)."""
    from aiohttp.test_utils import TestServer

    from crm import users
    from pbx.app import SERVICES, Adapters, build_app

    app = build_app(offline_settings(state_dir), run_escort=False, adapters=Adapters.offline())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        db = app[SERVICES].db
        await users.create_user(db, "boss", "pw-boss-123", role="settings_admin")
        await log_in(client, "boss", "pw-boss-123")
        yield db, client

"""#29, an existing Asterisk (a FreePBX box the clinic already has): its own configuration
(its transport, its [general] sections) ``#include``s the files `clinic-pbx asterisk config
--out DIR` writes, boots with them, and takes a change made in the panel live: the server,
told the folder (``asterisk.include_dir``), writes the panel's files there, reloads them over
AMI and says «применено» only when that Asterisk shows the new phone."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import users
from pbx.app import SERVICES, build_app
from pbx.asterisk.config import render_config
from pbx.asterisk.embedded import EmbeddedAsterisk
from pbx.cli.ops import include_files, write_files
from pbx.settings import Settings
from tests.conftest import TEST_STATE
from tests.unit.panel_client import csrf, log_in

pytestmark = [pytest.mark.integration]


def existing_box(settings: Settings, db: Path) -> Settings:
    a = settings.asterisk
    state = TEST_STATE.parent / "test-state-existing"
    return dataclasses.replace(
        settings, state_dir=state, database=db,
        asterisk=dataclasses.replace(a, embedded=False, include_dir=str(state / "asterisk" / "clinic-pbx"),
                                     sip_port=a.sip_port + 2000, ami_port=a.ami_port + 2000,
                                     http_port=a.http_port + 2000, agi_port=a.agi_port + 2000,
                                     rtp_start=a.rtp_start - 2000, rtp_end=a.rtp_end - 2000,
                                     operator_port=a.operator_port + 2000, phone_port_base=a.phone_port_base + 2000))


def own_config(settings: Settings) -> None:
    """What the box had before clinic-pbx: its own transport and [general] sections, then a line
    per file (INCLUDE.txt) including ours."""
    a, etc, inc = settings.asterisk, settings.asterisk_etc, Path(settings.asterisk.include_dir)
    own = {
        "pjsip.conf": f"[global]\ntype = global\n\n[box-udp]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:{a.sip_port}\n",
        "extensions.conf": "[general]\nstatic = yes\nwriteprotect = yes\n\n[box-own]\nexten => 1,1,Hangup()\n",
        "queues.conf": "[general]\npersistentmembers = no\n",
        "manager.conf": f"[general]\nenabled = yes\nport = {a.ami_port}\nbindaddr = 127.0.0.1\n",
        "ari.conf": "[general]\nenabled = yes\n",
    }
    for name, text in own.items():
        (etc / name).write_text(f"{text}\n#include {inc / ('clinic-pbx_' + name)}\n", encoding="utf-8")


@pytest.fixture
def box(asterisk: EmbeddedAsterisk, test_settings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, EmbeddedAsterisk]]:
    settings = existing_box(test_settings, tmp_path / "crm.sqlite")
    ast = EmbeddedAsterisk(settings)
    ast.stop()
    render_config(settings)  # the box's modules, logger, http, CDR: an Asterisk as any
    asyncio.run(_write_include_set(settings))
    own_config(settings)
    monkeypatch.setattr("pbx.asterisk.embedded.render_config", lambda s: s.asterisk_etc)  # the box keeps its own
    ast.start()
    try:
        yield settings, ast
    finally:
        ast.stop()


async def _write_include_set(settings: Settings) -> None:
    from crm.storage import database

    db = database(settings.db_location)
    await db.open()  # the CRM exists before its files are made
    await db.close()
    inc = Path(settings.asterisk.include_dir)
    write_files(inc, await include_files(settings, inc))


async def test_an_existing_asterisk_includes_our_files_and_takes_panel_changes(box) -> None:
    settings, ast = box
    assert "box-udp" in ast.rx("pjsip show transports")  # its own transport, none of ours
    assert "transport-udp" not in ast.rx("pjsip show transports")
    for context in ("from-operator", "from-phones", "clinic-outgoing", "clinic-trunk-out", "clinic-line-out", "box-own"):
        assert "There is no existence" not in ast.rx(f"dialplan show {context}"), context
    assert "reception-ringall" in ast.rx("queue show reception-ringall")
    assert "clinic-pbx" in ast.rx("manager show users")

    app = build_app(settings, manage_asterisk=False, run_escort=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        services = app[SERVICES]
        assert await services.ami.wait_connected(15)
        await users.create_user(services.db, "integrator", "длинный-пароль-1", role="settings_admin")
        await log_in(client, "integrator", "длинный-пароль-1")
        added = await client.post("/settings/telephony", data={
            "csrf_token": await csrf(client, "/settings/telephony"), "action": "phone_save", "extension": "104",
            "label": "Ресепшн 4", "queues": "reception-ringall"})
        assert added.status == 200 and 'class="password"' in await added.text()
        assert 'data-applied="1"' in await (await client.get("/settings/telephony")).text()
    assert "Endpoint:  104/104" in ast.rx("pjsip show endpoint 104")
    assert "PJSIP/104" in ast.rx("queue show reception-ringall")
    assert (Path(settings.asterisk.include_dir) / "pjsip_clinic.conf").read_text().count("[104]") == 3

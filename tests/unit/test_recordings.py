"""Recordings kept small and not for ever: a finished call's WAV becomes Ogg Vorbis (real sox),
the record follows, the panel serves it as audio/ogg; a missing file clears the record; past
``recordings_keep_days`` the file is deleted; the home page's figures."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

from crm import call_listing, calls
from crm.db import Database
from pbx.workers.recordings import RecordingKeeper, usage
from tests.unit.panel_client import offline_settings
from tests.unit.test_backup import record


def wav(path: Path, seconds: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "synth", str(seconds), "sine", "440"],
                   check=True)


async def test_compress_then_expire(tmp_path: Path) -> None:
    settings = dataclasses.replace(offline_settings(tmp_path), recordings_keep_days=30)
    db = Database(settings.db_path)
    await db.open()
    try:
        folder = settings.recordings_dir
        now = time.time()
        recent = dataclasses.replace(record(1), started_at=now - 600, ended_at=now - 500, recording="100.1.wav")
        old = dataclasses.replace(record(2), started_at=now - 40 * 86400, ended_at=now - 40 * 86400 + 60,
                                  recording="100.2.wav")
        gone = dataclasses.replace(record(3), started_at=now - 700, ended_at=now - 650, recording="100.3.wav")
        just = dataclasses.replace(record(4), started_at=now - 30, ended_at=now - 10, recording="100.4.wav")
        for r in (recent, old, gone, just):
            await calls.save_call(db, r)
        for name in ("100.1.wav", "100.2.wav", "100.4.wav"):
            wav(folder / name)
        before = (folder / "100.1.wav").stat().st_size
        keeper = RecordingKeeper(db, settings)
        compressed, deleted = await keeper.pass_once(now)
        names = {c["linkedid"]: c["recording"] for c in [await call_listing.get_call_by_linkedid(db, r.linkedid)
                                                          for r in (recent, old, gone, just)] if c}
        assert names[recent.linkedid] == "100.1.ogg" and not (folder / "100.1.wav").exists()
        assert (folder / "100.1.ogg").stat().st_size < before / 4  # Vorbis: a fraction of the WAV
        assert names[gone.linkedid] == ""  # nothing on disk: the record says so
        assert names[just.linkedid] == "100.4.wav"  # ended 10 s ago: not touched yet
        assert names[old.linkedid] == "" and not (folder / "100.2.ogg").exists() and not (folder / "100.2.wav").exists()
        assert (compressed, deleted) == (2, 1)  # the old one was compressed, then expired
        u = usage(folder)
        assert u.files == 2 and u.bytes > 0 and u.oldest is not None
    finally:
        await db.close()


async def test_the_home_page_and_the_player_for_an_ogg_recording(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from crm import users
    from pbx.app import SERVICES, Adapters, build_app
    from tests.unit.panel_client import log_in

    settings = offline_settings(tmp_path)
    app = build_app(settings, run_escort=False, adapters=Adapters.offline())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        db = app[SERVICES].db
        now = time.time()
        r = dataclasses.replace(record(1), started_at=now - 600, ended_at=now - 500, recording="100.1.wav")
        await calls.save_call(db, r)
        wav(settings.recordings_dir / "100.1.wav")
        await RecordingKeeper(db, settings).pass_once(now)
        call = await call_listing.get_call_by_linkedid(db, r.linkedid)
        assert call is not None and call["recording"] == "100.1.ogg"
        await users.create_user(db, "boss", "pw-boss-12", role="settings_admin", history_access="read")
        await users.create_user(db, "anna", "pw-anna-12", history_access="read")
        await log_in(client, "boss", "pw-boss-12")
        page = await (await client.get("/")).text()
        assert "Записи разговоров" in page and "1 файлов" in page and "хранятся бессрочно" in page
        played = await client.get(f"/recordings/{call['id']}")
        assert played.status == 200 and played.headers["Content-Type"] == "audio/ogg"
        assert (await played.read())[:4] == b"OggS"
        await client.post("/logout", data={})
    async with TestClient(TestServer(build_app(settings, run_escort=False, adapters=Adapters.offline()),
                                     host="127.0.0.1")) as client:
        await log_in(client, "anna", "pw-anna-12")
        assert "Записи разговоров" not in await (await client.get("/")).text()  # for settings admins

"""`clinic-pbx backup` / `restore`: a consistent online copy taken while calls are being written
holds every call committed before it started, passes integrity_check, and restores."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from crm import call_listing, calls
from crm.backup import backup, restore
from crm.db import Database
from crm.rules.call_records import CallRecord, LegRecord
from pbx.cli.main import main


def record(n: int) -> CallRecord:
    t0 = 1_790_000_000.0 + n
    lid = f"{t0}.{n}"
    leg = LegRecord("101", lid + ".1", "answered", t0, t0 + 2, t0 + 30, False)
    return CallRecord(lid, "incoming", "incoming", "74951110001", f"7916{n:07d}", "74951110001", "reception",
                      (leg,), "101", t0, t0 + 2, t0 + 30, 2.0, 28.0, "caller", "")


async def one_call_crm(state: Path) -> None:
    """A state folder whose CRM holds one call."""
    db = Database(state / "crm.sqlite")
    await db.open()
    await calls.save_call(db, record(1))
    await db.close()


async def test_a_backup_during_a_burst_of_writes(tmp_path: Path) -> None:
    db = Database(tmp_path / "state" / "crm.sqlite")
    await db.open()
    secrets = tmp_path / "state" / "secrets.json"
    secrets.write_text('{"web.cookie_secret": "x"}')
    try:
        for n in range(300):
            await calls.save_call(db, record(n))
        before = {r[0] for r in await db.fetchall("SELECT linkedid FROM calls")}
        stop = asyncio.Event()

        async def burst() -> int:
            n = 300
            while not stop.is_set():
                await calls.save_call(db, record(n))
                n += 1
            return n

        writer = asyncio.create_task(burst())
        folder = await asyncio.to_thread(backup, db.path, secrets, tmp_path / "backups")
        stop.set()
        written = await writer
        assert written > 300  # the server kept writing during the copy
    finally:
        await db.close()
    copy = sqlite3.connect(folder / "crm.sqlite")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    saved = {r[0] for r in copy.execute("SELECT linkedid FROM calls")}
    copy.close()
    assert before <= saved  # every call committed before the backup started
    assert stat.S_IMODE((folder / "crm.sqlite").stat().st_mode) == 0o600
    assert not (folder / "secrets.json").exists()  # never in a plain backup
    # put it back in place of a database that has moved on
    kept = restore(folder, tmp_path / "state" / "crm.sqlite", secrets)
    assert kept is not None and kept.exists()
    again = Database(tmp_path / "state" / "crm.sqlite")
    await again.open()
    try:
        assert {r[0] for r in await again.fetchall("SELECT linkedid FROM calls")} == saved
        assert len(await call_listing.list_calls(again, call_listing.CallFilter(limit=10))) == 10
    finally:
        await again.close()


def test_the_commands(tmp_path: Path, capsys, monkeypatch) -> None:
    state = tmp_path / "state"
    config = tmp_path / "clinic-pbx.toml"
    config.write_text(f'state_dir = "{state}"\n')
    asyncio.run(one_call_crm(state))
    assert main(["--config", str(config), "backup", str(tmp_path / "b")]) == 0
    folder = Path(capsys.readouterr().out.split("backup: ", 1)[1].strip())
    assert main(["--config", str(config), "restore", str(folder)]) == 0
    assert "restored" in capsys.readouterr().out


def test_migrate_dry_run_says_what_would_change_and_changes_nothing(tmp_path: Path, capsys) -> None:
    import argparse

    from crm.db import Database, applied_versions, pending_migrations
    from pbx.cli.ops import cmd_migrate
    from pbx.settings import Settings

    path = tmp_path / "crm.sqlite"
    async def create() -> None:
        db = Database(path)
        await db.open()
        await db.close()

    asyncio.run(create())
    assert pending_migrations(applied_versions(path)) == []
    # an installation one version behind: the callback tables are what an upgrade adds
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM schema_migrations WHERE version = 11")
    conn.execute("DROP TABLE mail_outbox")
    conn.commit()
    conn.close()
    settings = Settings(state_dir=tmp_path)
    assert cmd_migrate(settings, argparse.Namespace(dry_run=True)) == 0
    out = capsys.readouterr().out
    assert "1 migration(s) would be applied" in out and "0011_callback.sql" in out
    assert "CREATE TABLE mail_outbox (" in out and "--" not in out.split("0011_callback.sql", 1)[1].split("CREATE", 1)[1]
    assert pending_migrations(applied_versions(path))[0][0] == "0011_callback.sql"  # the dry run changed nothing
    # a real run applies it, and then nothing is pending
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE webhook_seen; DROP TABLE callback_attempts; DROP TABLE callback_requests;"
                       " DROP TABLE callback_sources;")
    conn.close()
    assert cmd_migrate(settings, argparse.Namespace(dry_run=False)) == 0
    assert "applied 0011_callback.sql" in capsys.readouterr().out and pending_migrations(applied_versions(path)) == []


def test_nightly_backups_keep_the_newest(tmp_path: Path, capsys) -> None:
    from crm.backup import prune

    state = tmp_path / "state"
    config = tmp_path / "clinic-pbx.toml"
    config.write_text(f'state_dir = "{state}"\nbackup_keep = 2\n')
    asyncio.run(one_call_crm(state))
    target = state / "backups"
    target.mkdir(parents=True)
    for day in ("20261120-033000", "20261121-033000", "20261122-033000"):  # three earlier nights
        (target / f"clinic-pbx-{day}").mkdir()
        (target / f"clinic-pbx-{day}" / "crm.sqlite").write_bytes(b"x")
    (target / "notes.txt").write_text("not a backup")
    assert main(["--config", str(config), "backup"]) == 0  # the default folder and retention
    out = capsys.readouterr().out
    kept = sorted(p.name for p in target.iterdir())
    assert len(kept) == 3 and kept[0] == "clinic-pbx-20261122-033000" and kept[-1] == "notes.txt", kept
    assert out.count("removed") == 2
    assert prune(target, 0) == []  # 0 keeps all


def test_an_encrypted_backup_is_read_only_with_the_clinics_key(tmp_path: Path, capsys) -> None:
    from crm.backup_crypto import MAGIC, BackupKeyError, new_key_pair

    state = tmp_path / "state"
    asyncio.run(one_call_crm(state))
    (state / "secrets.json").write_text('{"web.cookie_secret": "the-secret-value"}')
    key_file = tmp_path / "clinic.key"
    assert main(["--config", str(_config(tmp_path, state)), "backup-key", str(key_file)]) == 0
    public = capsys.readouterr().out.split('backup_public_key = "', 1)[1].split('"', 1)[0]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    config = _config(tmp_path, state, f'backup_public_key = "{public}"\n')
    assert main(["--config", str(config), "backup", str(tmp_path / "b")]) == 0
    folder = Path(capsys.readouterr().out.split("backup: ", 1)[1].strip())
    assert sorted(p.name for p in folder.iterdir()) == ["crm.sqlite.enc", "secrets.json.enc"]
    for f in folder.iterdir():
        data = f.read_bytes()
        assert data.startswith(MAGIC) and b"SQLite format 3" not in data and b"the-secret-value" not in data
    assert not list(state.glob(".backup-*"))  # the plain copy made on the way is gone
    # without the key, with another key, or cut short: refused, the database untouched
    with pytest.raises(BackupKeyError):
        restore(folder, state / "crm.sqlite", state / "secrets.json")
    other = tmp_path / "other.key"
    other.write_text(new_key_pair()[0])
    assert_refused = [["restore", str(folder), "--key", str(other)]]
    for args in assert_refused:
        with pytest.raises(BackupKeyError):
            main(["--config", str(config), *args])
    cut = tmp_path / "cut"
    cut.mkdir()
    whole = (folder / "crm.sqlite.enc").read_bytes()
    (cut / "crm.sqlite.enc").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BackupKeyError):
        restore(cut, state / "crm.sqlite", state / "secrets.json", key_file.read_text().strip())
    # with the clinic's key: the calls and the secrets come back
    (state / "secrets.json").write_text("{}")
    assert main(["--config", str(config), "restore", str(folder), "--key", str(key_file)]) == 0
    assert "the-secret-value" in (state / "secrets.json").read_text()
    con = sqlite3.connect(state / "crm.sqlite")
    assert con.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1
    con.close()


def _config(tmp_path: Path, state: Path, extra: str = "") -> Path:
    config = tmp_path / "clinic-pbx.toml"
    config.write_text(f'state_dir = "{state}"\n{extra}')
    return config

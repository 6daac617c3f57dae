"""The operator's commands of ``clinic-pbx`` (see ``pbx.cli.main``): systemd units, migrations,
backups, and the demo's website request. Each takes the settings and the parsed arguments."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from pbx.settings import ENV_PREFIX, Settings, settings_file


def cmd_install_service(settings: Settings, args: argparse.Namespace) -> int:
    from pbx.cli.service_units import (
        ASTERISK_UNIT,
        BACKUP_TIMER,
        CHECK_TIMER,
        SERVER_UNIT,
        install_units,
        render_units,
    )

    root: Path = args.root
    config = root / str(args.unit_config).lstrip("/")
    if not config.exists():  # one place for the configuration: the settings in effect now, kept
        config.parent.mkdir(parents=True, exist_ok=True)
        source = settings_file(args.config)
        text = source.read_text(encoding="utf-8") if source is not None else ""
        if not any(line.split("=")[0].strip() == "state_dir" for line in text.splitlines()):
            text = f'state_dir = "{settings.state_dir}"\n' + text  # top-level keys come before tables
        config.write_text("# clinic-pbx settings (see clinic-pbx.example.toml for every key)\n" + text,
                          encoding="utf-8")
        config.chmod(0o600)
        print(f"install-service: wrote {config}" + (f" from {source}" if source else ""))
        if ignored := sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k != f"{ENV_PREFIX}CONFIG"):
            print(f"install-service: the units do not see environment settings ({', '.join(ignored)}):"
                  f" put them into {config}")
    binary = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "clinic-pbx" else \
        Path(sys.executable).parent / "clinic-pbx"
    units = render_units(settings, binary, args.unit_config)
    for path in install_units(units, root / "etc" / "systemd" / "system"):
        print(f"install-service: wrote {path}")
    names = [n for n in (ASTERISK_UNIT, SERVER_UNIT, CHECK_TIMER, BACKUP_TIMER) if n in units]
    print(f"then: systemctl daemon-reload && systemctl enable --now {' '.join(names)}")
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from crm.db import pending_migrations
    from crm.storage import applied_versions, database

    pending = pending_migrations(applied_versions(settings.db_location))
    if not pending:
        print(f"migrate: {settings.db_shown} is up to date")
        return 0
    if args.dry_run:
        print(f"migrate --dry-run: {len(pending)} migration(s) would be applied to {settings.db_shown},"
              " each in one transaction:")
        for name, lines in pending:
            print(f"{name}")
            for line in lines:
                print(f"    {line}")
        return 0

    async def apply() -> list[str]:
        db = database(settings.db_location)
        await db.open()  # applies them, each atomically
        await db.close()
        return [name for name, _ in pending]

    for name in asyncio.run(apply()):
        print(f"applied {name}")
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from crm.backup import backup, prune

    if settings.on_postgresql:
        print(f"backup: the database is PostgreSQL ({settings.db_shown}): back it up with pg_dump on its"
              " host (README, \"Clinic chain\")", file=sys.stderr)
        return 2
    target = args.target or (Path(settings.backup_dir) if settings.backup_dir else settings.state_dir / "backups")
    folder = backup(settings.db_path, settings.state_dir / "secrets.json", target, public_key=settings.backup_public_key)
    print(f"backup: {folder}")
    if not settings.backup_public_key:
        print("backup: not encrypted (backup_public_key is not set), so the secrets were left out;"
              " see `clinic-pbx backup-key`", file=sys.stderr)
    keep = settings.backup_keep if args.keep is None else args.keep
    for old in prune(target, keep):
        print(f"backup: removed {old} (keeping the {keep} newest)")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from crm.backup import restore

    if settings.on_postgresql:
        print(f"restore: the database is PostgreSQL ({settings.db_shown}): restore it with pg_restore"
              " (README, \"Clinic chain\")", file=sys.stderr)
        return 2
    key = args.key.read_text(encoding="utf-8").strip() if args.key else ""
    kept = restore(args.folder, settings.db_path, settings.state_dir / "secrets.json", key)
    print(f"restored {args.folder} into {settings.db_path}" + (f"; the previous database is {kept}" if kept else ""))
    return 0


def cmd_backup_key(settings: Settings, args: argparse.Namespace) -> int:
    from crm.backup_crypto import new_key_pair

    private, public = new_key_pair()
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never over an existing key
    with os.fdopen(fd, "w") as fh:
        fh.write(private + "\n")
    print(f"backup-key: the private key is in {args.out}: keep it off this box (a safe, the director's"
          " password manager); without it no backup can be restored")
    print(f'put into the settings file:  backup_public_key = "{public}"')
    return 0


def cmd_demo_request(settings: Settings, args: argparse.Namespace) -> int:
    """Signs with the source's secret from the CRM (same machine) and posts to the webhook."""
    import json
    import time
    import uuid

    import aiohttp

    from crm import callbacks, signatures
    from crm.storage import database

    async def send() -> int:
        db = database(settings.db_location)
        await db.open()
        try:
            src = await callbacks.source(db, args.source)
        finally:
            await db.close()
        if src is None or not src["secret"]:
            print(f"demo-request: no source {args.source!r} with a secret (set one up on «Обратные звонки»)")
            return 1
        body = json.dumps({"source": args.source, "external_id": f"demo-{uuid.uuid4().hex[:8]}",
                           "name": args.name, "phone": args.phone, "doctor": args.doctor, "service": args.service,
                           "desired_time": "в ближайшие дни", "utm": {"utm_source": "demo"}},
                          ensure_ascii=False).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", signatures.TIMESTAMP_HEADER: stamp,
                   signatures.SIGNATURE_HEADER: signatures.sign(src["secret"], stamp, body)}
        url = f"http://127.0.0.1:{settings.web.port}/api/v1/requests"
        try:
            async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as r:
                print(f"demo-request: {r.status} {await r.text()}")
                return 0 if r.status in (200, 201) else 1
        except aiohttp.ClientError as exc:
            print(f"demo-request: the server at {url} does not answer ({exc}); start it with `make run`")
            return 1

    return asyncio.run(send())


def write_include_set(settings: Settings, out: Path) -> str:
    """``clinic-pbx asterisk config --out DIR``: the files an existing Asterisk includes (the
    shipped dialplan, queues and templates, and the panel's telephony as it is now)."""
    files = asyncio.run(include_files(settings, out))
    write_files(out, files)
    return files["INCLUDE.txt"]


def write_files(out: Path, files: dict[str, str]) -> None:
    from pbx.asterisk.apply import write_atomically

    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomically(out / name, text)
        (out / name).chmod(0o640)  # passwords inside: for the Asterisk group (README: chgrp)


async def include_files(settings: Settings, out: Path) -> dict[str, str]:
    from dataclasses import replace
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from crm.storage import database
    from pbx.asterisk.apply import load_rows
    from pbx.asterisk.config import TEMPLATE_DIR, render_text, template_values
    from pbx.asterisk.include_set import include_set
    from pbx.asterisk.render import render_telephony
    from pbx.outbound.tts import PromptCache, TtsError

    db = database(settings.db_location)
    await db.open()
    try:
        rows = await load_rows(db, settings.asterisk.branches, time.time())
    finally:
        await db.close()
    today = datetime.now(ZoneInfo(settings.time_zone)).date()
    try:
        ctx = await rows.context(settings.time_zone, today, PromptCache(settings.sounds_dir / "tts", settings.robot.tts_rate),
                                 own_transports=False)
    except TtsError as exc:  # the messages stay silent there; everything else is written
        print(f"after-hours messages not spoken ({exc})", file=sys.stderr)
        silent = replace(rows, numbers=[replace(n, closed_message="") for n in rows.numbers])
        ctx = await silent.context(settings.time_zone, today, None, own_transports=False)
    values = template_values(settings)
    shipped = {src.name: render_text(src.read_text(encoding="utf-8"), values)  # noqa: ASYNC240 - a CLI, once
               for src in TEMPLATE_DIR.glob("*.conf")}
    return include_set(shipped, render_telephony(rows.providers, rows.numbers, ctx, rows.phones), out)

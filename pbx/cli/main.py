"""``clinic-pbx``: the command line (run, check, init, asterisk, record-ami, demo-call)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from crm import login_limits
from pbx.cli import data_import
from pbx.settings import Settings, load_settings
from pbx.version import VERSION

log = logging.getLogger("clinic-pbx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clinic-pbx", description=__doc__)
    parser.add_argument("--config", type=Path, help="settings file (default clinic-pbx.toml)")
    parser.add_argument("--version", action="version", version=f"clinic-pbx {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run the server (and the embedded Asterisk)")
    p_check = sub.add_parser("check", help="check AMI, ARI and FastAGI")
    p_check.add_argument("--timeout", type=float, default=5.0)
    p_init = sub.add_parser("init", help="create the database and the admin account")
    p_init.add_argument("--demo", action="store_true", help="also load the demo clinic")
    p_init.add_argument("--admin", default="admin", help="admin login (default admin)")

    p_ast = sub.add_parser("asterisk", help="the embedded Asterisk")
    p_ast.add_argument("action", choices=["install", "start", "stop", "restart", "status", "rx", "config"],
                       help="start adopts a running Asterisk; stop and restart end every call")
    p_ast.add_argument("cli", nargs="?", default="", help="CLI command for rx")
    p_ast.add_argument("--out", type=Path, help="config: the files an existing Asterisk includes, into this folder")

    p_rec = sub.add_parser("record-ami", help="record raw AMI traffic into a fixture file")
    p_rec.add_argument("output", type=Path)
    p_rec.add_argument("--seconds", type=float, default=0, help="stop after N s (0: Ctrl-C)")

    p_pw = sub.add_parser("password", help="set a new generated password for a user (ends their sessions)")
    p_pw.add_argument("login")

    p_tok = sub.add_parser("token", help="JSON API tokens")
    p_tok.add_argument("action", choices=["create", "revoke"])
    p_tok.add_argument("name")
    p_tok.add_argument("--scope", action="append", dest="scopes",
                       help="calls:read (default), requests:write or mis:sync; repeat for several")
    p_tok.add_argument("--days", type=int, default=0, help="expires after N days (default: never)")

    p_demo = sub.add_parser("demo-call", help="place a demo call through the clinic's queue")
    p_demo.add_argument("--from", dest="caller", default="+79161234567")
    p_demo.add_argument("--did", default="74951110001")
    p_demo.add_argument("--answer", default="101",
                        help="desk phone that answers (101-103); none: a missed call; browser: the"
                             " desk phones only ring, a phone in the browser answers (#34)")
    p_demo.add_argument("--ring-ms", type=int, default=2000,
                        help="how long the answering phone rings before it picks up; with"
                             " --answer none, how long the caller waits before giving up (ms)")
    p_demo.add_argument("--talk-ms", type=int, default=4000,
                        help="how long the caller talks after the answer before hanging up (ms)")
    p_demo.add_argument("--keep-traces", action="store_true",
                        help="keep SIPp's traces (kept anyway when the call fails)")

    p_phones = sub.add_parser("demo-phones", help="play desk phones 101-103 and the patient side of"
                              " click-to-call until Ctrl-C (the demo has no real phones)")
    p_phones.add_argument("--ring-ms", type=int, default=1500, help="how long a phone rings before it answers")
    p_phones.add_argument("--talk-ms", type=int, default=15000,
                          help="how long the patient talks on a click-to-call before hanging up")

    p_svc = sub.add_parser("install-service", help="install systemd units: the embedded Asterisk, the server,"
                           " a health-check timer (then: systemctl daemon-reload; systemctl enable --now ...)")
    p_svc.add_argument("--root", type=Path, default=Path("/"), help="install below this root (default /)")
    p_svc.add_argument("--unit-config", type=Path, default=Path("/etc/clinic-pbx/clinic-pbx.toml"),
                       help="the settings file the units use (written from the current settings if missing)")

    data_import.add_parser(sub)

    p_mig = sub.add_parser("migrate", help="apply the database's pending migrations (the server does so at start)")
    p_mig.add_argument("--dry-run", action="store_true", help="only say what would change")

    p_backup = sub.add_parser("backup", help="a consistent online copy of the CRM and the secrets into DIR")
    p_backup.add_argument("target", type=Path, nargs="?",
                          help="the folder (default: backup_dir, or <state_dir>/backups)")
    p_backup.add_argument("--keep", type=int, default=None,
                          help="then keep only the N newest backups there (default: backup_keep; 0 keeps all)")
    p_restore = sub.add_parser("restore", help="put a backup folder back (stop the server first)")
    p_restore.add_argument("folder", type=Path)
    p_restore.add_argument("--key", type=Path, help="the clinic's private backup key (an encrypted backup)")
    p_bkey = sub.add_parser("backup-key", help="make the clinic's backup key pair: the private key into FILE"
                            " (keep it off the box), the public one for the settings")
    p_bkey.add_argument("out", type=Path)

    p_req = sub.add_parser("demo-request", help="send a signed booking request to the running server's"
                           " webhook, as the aggregator would (the website callback robot calls it)")
    p_req.add_argument("--phone", default="+79031112233")
    p_req.add_argument("--name", default="Иванова Мария Петровна")
    p_req.add_argument("--doctor", default="Кузнецова Ольга Викторовна")
    p_req.add_argument("--service", default="Профессиональная чистка зубов")
    p_req.add_argument("--source", default="napopravku", help="a source set up on «Обратные звонки»")

    sub.add_parser("sounds", help="render the robot's fixed phrases (sounds/prompts.toml) for Asterisk")

    args = parser.parse_args(argv)
    from pbx.process import private_files

    private_files()  # before anything is written: the database, secrets, logs are 0600
    settings = load_settings(args.config)
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    if args.command == "check":  # its table is the answer; adapters' INFO lines are noise
        level = max(level, logging.ERROR)
    from pbx.logs import setup_logging

    setup_logging(level, settings.log_format, settings.log_file, settings.log_max_mb, settings.log_keep)
    from pbx.cli.ops import (
        cmd_backup,
        cmd_backup_key,
        cmd_demo_request,
        cmd_install_service,
        cmd_migrate,
        cmd_restore,
    )

    handler = {
        "run": cmd_run,
        "check": cmd_check,
        "init": cmd_init,
        "asterisk": cmd_asterisk,
        "record-ami": cmd_record_ami,
        "demo-call": cmd_demo_call,
        "demo-phones": cmd_demo_phones,
        "token": cmd_token,
        "password": cmd_password,
        "sounds": cmd_sounds,
        "demo-request": cmd_demo_request,
        "backup": cmd_backup,
        "backup-key": cmd_backup_key,
        "migrate": cmd_migrate,
        "install-service": cmd_install_service,
        "restore": cmd_restore,
        "import": data_import.cmd_import,
    }[args.command]
    return handler(settings, args)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from pbx.app import build_app
    from pbx.process import quiet_accept_errors, raise_open_files, secure_state_dir
    from web.serve import serve

    quiet_accept_errors()
    secure_state_dir(settings.state_dir, ((settings.db_path,) if not settings.on_postgresql else ())
                     + (settings.state_dir / "secrets.json",))
    log.info("open-file limit: %d", raise_open_files())

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        app = build_app(settings)
        print(f"clinic-pbx panel: http://{settings.web.host}:{settings.web.port}/", flush=True)
        w = settings.web
        await serve(app, w.host, w.port, stop, max_connections=w.max_connections, header_timeout=w.header_timeout,
                    max_per_address=w.max_connections_per_address,
                    shared=login_limits.trusted_networks(w.trusted_proxies))

    asyncio.run(run())
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from pbx.cli.checks import run_checks

    results = asyncio.run(run_checks(settings, args.timeout))
    width = max(len(name) for name in results)
    for name, (ok, detail) in results.items():
        print(f"{name:<{width}}  {'OK  ' if ok else 'FAIL'}  {detail}")
    return 0 if all(ok for ok, _ in results.values()) else 1


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from crm import users
    from crm.storage import database
    from pbx.cli.demo_data import load_demo_clinic

    async def init() -> int:
        db = database(settings.db_location)
        await db.open()
        try:
            if await users.user_exists(db, args.admin):
                print(f"database ready: {settings.db_shown}; user {args.admin!r} already exists")
            else:
                password = secrets.token_urlsafe(9)
                # the clinic's own admin edits the history and reads «История обращений»
                await users.create_user(db, args.admin, password, full_name="Администратор",
                                        role="settings_admin", history_access="edit", appeals_access=True)
                keep = settings.initial_password_file
                fd = os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(password + "\n")
                print(f"database ready: {settings.db_shown}")
                print(f"login: {args.admin}   password: {password}   (shown once; also in {keep},"
                      " deleted at the first login)")
            if args.demo:
                for line in await load_demo_clinic(db, settings, time.time()):
                    print(line)
            else:  # a real clinic: the panel leads the set-up, step by step, each verified live
                print("next: log in and open /setup (provider, numbers, desk phones, queues, users)")
        finally:
            await db.close()
        return 0

    return asyncio.run(init())


def cmd_asterisk(settings: Settings, args: argparse.Namespace) -> int:
    from pbx.asterisk.config import render_config
    from pbx.asterisk.embedded import EmbeddedAsterisk

    ast = EmbeddedAsterisk(settings)
    if args.action == "install":
        ast.install()
    elif args.action == "config" and args.out:
        from pbx.cli.ops import write_include_set

        print(write_include_set(settings, args.out.resolve()))
    elif args.action == "config":
        print(render_config(settings))
    elif args.action == "start":
        pid = ast.start()
        print(f"asterisk running, pid {pid}" + (" (adopted)" if ast.adopted else ""))
    elif args.action == "restart":
        pid = ast.restart()
        print(f"asterisk restarted, pid {pid}")
    elif args.action == "stop":
        ast.stop()
        print("asterisk stopped")
    elif args.action == "status":
        if not ast.running:
            print("asterisk not running")
            return 3
        print(ast.rx("core show uptime"), end="")
    elif args.action == "rx":
        print(ast.rx(args.cli), end="")
    return 0


def cmd_record_ami(settings: Settings, args: argparse.Namespace) -> int:
    from pbx.ami.client import AmiClient
    from pbx.ami.recording import RawRecorder

    async def record() -> int:
        recorder = RawRecorder(args.output)
        a = settings.asterisk
        client = AmiClient(a.host, a.ami_port, a.ami_user, a.ami_secret, raw_sink=recorder)
        if not await client.start(wait=5.0):
            print("AMI: could not log in", file=sys.stderr)
            await client.stop()
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print(f"recording AMI to {args.output} (Ctrl-C to stop)", flush=True)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(stop.wait(), args.seconds or None)
        except TimeoutError:
            pass
        await client.stop()
        recorder.close()
        print(f"{recorder.chunks} reads, {recorder.bytes} bytes in {time.monotonic() - t0:.1f} s")
        return 0

    return asyncio.run(record())


def cmd_password(settings: Settings, args: argparse.Namespace) -> int:
    from crm import directory, users
    from crm.storage import database

    async def run() -> int:
        db = database(settings.db_location)
        await db.open()
        try:
            uid = await directory.user_id(db, args.login)
            if uid is None:
                print(f"no user {args.login!r}", file=sys.stderr)
                return 1
            password = secrets.token_urlsafe(9)
            await users.set_password(db, uid, password, time.time())
            print(f"login: {args.login}   new password: {password}   (shown once; their sessions ended)")
            return 0
        finally:
            await db.close()

    return asyncio.run(run())


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from crm import tokens
    from crm.storage import database

    async def run() -> int:
        db = database(settings.db_location)
        await db.open()
        try:
            if args.action == "create":
                expires = time.time() + args.days * 86400 if args.days > 0 else None
                try:
                    token = await tokens.create_token(db, args.name, tuple(args.scopes or ["calls:read"]), expires)
                except ValueError as exc:
                    print(f"token: {exc}", file=sys.stderr)
                    return 2
                print(f"token {args.name!r} (shown once): {token}")
                return 0
            ok = await tokens.revoke_token(db, args.name)
            print("revoked" if ok else f"no token named {args.name!r}")
            return 0 if ok else 1
        finally:
            await db.close()

    return asyncio.run(run())


def cmd_demo_call(settings: Settings, args: argparse.Namespace) -> int:
    from pbx.cli.demo import DemoCall

    result = asyncio.run(
        DemoCall(settings).run(args.caller, args.did, args.answer, args.ring_ms, args.talk_ms,
                               keep=args.keep_traces)
    )
    print(result.summary())
    return 0 if result.ok else 1



def cmd_demo_phones(settings: Settings, args: argparse.Namespace) -> int:
    import tempfile

    from pbx.cli.demo import run_demo_phones

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        with tempfile.TemporaryDirectory(prefix="clinic-pbx-phones-") as workdir:
            print("desk phones 101-103 answer every call; the patient answers click-to-call."
                  " Ctrl-C stops them.", flush=True)
            problems = await run_demo_phones(settings, Path(workdir), stop, ring_ms=args.ring_ms,
                                             talk_ms=args.talk_ms)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0

    return asyncio.run(run())


def cmd_sounds(settings: Settings, args: argparse.Namespace) -> int:
    from pbx.outbound.tts import (
        PromptCache,
        TtsError,
        load_callback_phrases,
        load_phrases,
        render_phrases,
    )

    async def render() -> int:
        cache = PromptCache(settings.sounds_dir / "tts", settings.robot.tts_rate)
        try:
            paths = await render_phrases(cache, load_phrases() | {
                f"callback_{k}": v for k, v in load_callback_phrases().items()})
        except TtsError as exc:
            print(f"sounds: {exc}")
            return 1
        for name, path in paths.items():
            print(f"{name}: {path}.wav")
        return 0

    return asyncio.run(render())


if __name__ == "__main__":
    sys.exit(main())

"""FastAGI caller lookup as Asterisk sees it, with 1,000,000 patients, N calls at once.

Starts a bench Asterisk (own ports and runtime folder), a CRM with 1,000,000 patients (built
once, cached in .local/bench/), and the FastAGI server; then originates waves of ``--concurrent``
Local channels into the [agi-check] context (Set CALLERID(num) -> AGI incoming -> Hangup) with
random patients' numbers. For every channel, from Asterisk's own AMI timestamps:
  session  = Newexten AGI -> Newexten of the next priority (all the time the call waits on us),
  commands = first AGIExecStart -> last AGIExecEnd.
The same run measures a naive baseline: panoramisk's FastAGI Application with a blocking
sqlite3 lookup on the same database and the same commands.

    .venv/bin/python bench/agi_lookup.py [--patients 1000000] [--concurrent 200] [--waves 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agi.routes import incoming_route  # noqa: E402
from agi.server import FastAgiServer  # noqa: E402
from crm.db import Database  # noqa: E402
from pbx.ami.client import AmiClient, AmiEvent  # noqa: E402
from pbx.asterisk.embedded import EmbeddedAsterisk  # noqa: E402
from pbx.settings import PROJECT_DIR, AsteriskSettings, Settings, with_generated_secrets  # noqa: E402

BENCH = PROJECT_DIR / ".local" / "bench"


def number(i: int) -> str:
    return f"+7916{i:07d}"


def have_db(path: Path, n: int) -> bool:
    """The cached bench database is there with exactly n patients (else it is removed)."""
    if not path.exists():
        return False
    con = sqlite3.connect(path)
    have = con.execute("SELECT COUNT(*) FROM patients").fetchone()[0]
    con.close()
    if have != n:
        path.unlink()
    return have == n


async def build_db(path: Path, n: int) -> None:
    if await asyncio.to_thread(have_db, path, n):
        return
    db = Database(path)
    await db.open()  # schema by the real migrations
    await db.close()
    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO patients (id, last_name, first_name, middle_name, created_at)"
            " VALUES (?, ?, ?, ?, '2026-01-01')",
            ((i, f"Пациентов{i}", "Иван", "Петрович") for i in range(1, n + 1)),
        )
        con.executemany(
            "INSERT INTO patient_phones (patient_id, e164, kind) VALUES (?, ?, 'mobile')",
            ((i, number(i)) for i in range(1, n + 1)),
        )
    con.execute("ANALYZE")
    con.close()
    print(f"built a CRM with {n:,} patients in {time.perf_counter() - t0:.0f} s")


def naive_app(path: Path, port: int):
    """The baseline: panoramisk's Application, a blocking sqlite3 lookup, same commands."""
    from panoramisk.fast_agi import Application

    con = sqlite3.connect(path, check_same_thread=False)

    async def incoming(request):
        e164 = "+" + request.headers.get("agi_callerid", "").lstrip("+")
        row = con.execute(
            "SELECT p.id, p.last_name, p.first_name, p.middle_name FROM patient_phones ph"
            " JOIN patients p ON p.id = ph.patient_id WHERE ph.e164 = ?", (e164,)
        ).fetchone()
        for cmd in (f'SET VARIABLE CLINIC_CALLER_E164 "{e164}"', 'SET VARIABLE CLINIC_CALLER_TYPE "patient"',
                    f'SET VARIABLE CLINIC_PATIENT_ID "{row[0] if row else ""}"',
                    f'SET VARIABLE CALLERID(name) "{row[1] if row else ""}"', 'SET VARIABLE CLINIC_AGI_STATUS "OK"'):
            await request.send_command(cmd)

    app = Application(loop=asyncio.get_running_loop())
    app.add_route("incoming", incoming)
    return app


async def wave(ami: AmiClient, concurrent: int, n_patients: int, rate: float) -> None:
    """Calls arrive at ``rate`` per second and each stays up (Wait) long enough that
    ``concurrent`` of them are up at once while the later ones are looked up."""
    hold = max(2, int(concurrent / rate) + 1)
    t0 = time.perf_counter()
    for i in range(concurrent):
        num = number(random.randint(1, n_patients)).lstrip("+")
        ami.manager.send_action({  # type: ignore[union-attr]
            "Action": "Originate", "Channel": f"Local/{num}@agi-check", "Application": "Wait",
            "Data": str(hold), "Async": "true",
        })
        ahead = (i + 1) / rate - (time.perf_counter() - t0)
        if ahead > 0:
            await asyncio.sleep(ahead)
    await asyncio.sleep(hold + 2)


def measure(events: list[AmiEvent]) -> tuple[list[float], list[float]]:
    agi_start: dict[str, float] = {}
    session, commands = [], []
    first_cmd: dict[str, float] = {}
    last_cmd: dict[str, float] = {}
    for e in events:
        h, uid = e.headers, str(e.headers.get("Uniqueid", ""))
        ts = float(str(h.get("Timestamp", "0")))
        if e.name == "Newexten" and h.get("Context") == "agi-check":
            if h.get("Application") == "AGI":
                agi_start[uid] = ts
            elif uid in agi_start and h.get("Application") == "Verbose":
                session.append((ts - agi_start.pop(uid)) * 1000)
                if uid in first_cmd:
                    commands.append((last_cmd[uid] - first_cmd[uid]) * 1000)
        elif e.name == "AGIExecStart" and uid in agi_start:
            first_cmd.setdefault(uid, ts)
        elif e.name == "AGIExecEnd" and uid in agi_start:
            last_cmd[uid] = ts
    return session, commands


def pct(v: list[float], p: float) -> float:
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


async def run_one(label: str, start_server, settings: Settings, args) -> float:
    a = settings.asterisk
    ami = AmiClient(a.host, a.ami_port, a.ami_user, a.ami_secret)
    assert await ami.start(wait=5)
    events: list[AmiEvent] = []

    async def collect() -> None:
        while True:
            item = await ami.queue.get()
            if isinstance(item, AmiEvent):
                events.append(item)

    task = asyncio.create_task(collect())
    stop = await start_server()
    for _ in range(args.waves):
        await wave(ami, args.concurrent, args.patients, args.rate)
    await stop()
    task.cancel()
    await ami.stop()
    session, commands = measure(events)
    print(f"{label:34s} {len(session):5d} calls  session p50 {pct(session, .5):6.2f} ms  "
          f"p99 {pct(session, .99):6.2f} ms  max {max(session):6.2f} ms   "
          f"commands p99 {pct(commands, .99):6.2f} ms")
    return pct(session, 0.99)


async def main(args) -> None:
    BENCH.mkdir(parents=True, exist_ok=True)
    dbpath = BENCH / f"crm-{args.patients}.sqlite"
    await build_db(dbpath, args.patients)
    asterisk = AsteriskSettings(
        sip_port=25060, ami_port=25038, http_port=28088, agi_port=24573, rtp_start=32000,
        rtp_end=32999, operator_port=25090, phone_port_base=25070,
    )
    settings = with_generated_secrets(Settings(state_dir=BENCH / "state", asterisk=asterisk, database=dbpath))
    ast = EmbeddedAsterisk(settings)
    ast.start()
    try:
        db = Database(dbpath)
        await db.open()

        async def ours():
            server = FastAgiServer("127.0.0.1", settings.asterisk.agi_port)
            server.add_route("incoming", incoming_route(db))
            await server.start()
            return server.stop

        async def naive():
            app = naive_app(dbpath, settings.asterisk.agi_port)
            srv = await asyncio.start_server(app.handler, "127.0.0.1", settings.asterisk.agi_port)

            async def stop():
                srv.close()
                await srv.wait_closed()
            return stop

        print(f"{args.patients:,} patients; waves of {args.concurrent} calls arriving at "
              f"{args.rate:.0f}/s and staying up (all {args.concurrent} up at once) x {args.waves}")
        base = await run_one("naive panoramisk + sqlite3", naive, settings, args)
        mine = await run_one("clinic-pbx FastAgiServer", ours, settings, args)
        print(f"p99 ratio naive / clinic-pbx: {base / mine:.2f}x   (goal: clinic-pbx p99 <= 3 ms)")
        await db.close()
    finally:
        ast.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1_000_000)
    ap.add_argument("--concurrent", type=int, default=200)
    ap.add_argument("--waves", type=int, default=3)
    ap.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    asyncio.run(main(ap.parse_args()))

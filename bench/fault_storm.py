"""Fault storm: clinic-pbx killed with ``kill -9`` at random moments while 20 calls are up and the
confirmation robot is calling, started again each time (as systemd would).

What must hold, printed at the end:
- every operator call ends as the caller meant it (SIPp's exit code 0: answered calls kept
  talking through the kills, queued callers were answered);
- every call is in the CRM exactly once and agrees with Asterisk's CDR;
- no robot job ran twice: per appointment, the robot calls in the CRM are the ones in the CDR,
  never two at once;
- live cards come back after each restart (health's live call count while calls are up).

    .venv/bin/python bench/fault_storm.py [--kills 5] [--concurrent 20] [--calls 80]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import time

from harness import CLINIC_PBX, BenchServer, bench_config, compare_with_cdr, health

from pbx.outbound.sipp import NEVER, start_desk_phone, start_operator_load
from pbx.settings import PROJECT_DIR

BENCH = PROJECT_DIR / ".local" / "bench-storm"


def robot_appointments(server: BenchServer) -> list[tuple[int, str]]:
    """(appointment id, phone) of the demo's patient-sim patients."""
    con = sqlite3.connect(f"file:{server.settings.db_path}?mode=ro", uri=True)
    try:
        return list(con.execute(
            "SELECT a.id, pp.e164 FROM appointments a JOIN patient_phones pp ON pp.patient_id = a.patient_id"
            " WHERE pp.e164 LIKE '+79990000%' AND a.status = 'unconfirmed'"))
    finally:
        con.close()


def robot_check(server: BenchServer, since: float) -> list[str]:
    """Robot calls of the CRM against the Local channels Asterisk's CDR saw, per number."""
    problems = []
    con = sqlite3.connect(f"file:{server.settings.db_path}?mode=ro", uri=True)
    ours: dict[str, list[tuple[float, float | None]]] = {}
    for phone, started, ended in con.execute(
            "SELECT pp.e164, rc.started_ts, rc.ended_ts FROM robot_calls rc"
            " JOIN appointments a ON a.id = rc.appointment_id JOIN patient_phones pp ON pp.patient_id = a.patient_id"
            " WHERE rc.started_ts >= ? AND pp.e164 LIKE '+79990000%'", (since,)):
        ours.setdefault(phone, []).append((started, ended))
    con.close()
    cdr = sqlite3.connect(f"file:{server.settings.cdr_db_path}?mode=ro", uri=True)
    theirs: dict[str, set[str]] = {}
    for channel, linkedid in cdr.execute(
            "SELECT channel, linkedid FROM cdr WHERE CAST(start_u AS REAL) >= ? AND channel LIKE 'Local/%patient-sim%;1'",
            (since,)):
        number = "+" + channel.split("/", 1)[1].split("@", 1)[0]
        theirs.setdefault(number, set()).add(linkedid)
    cdr.close()
    for phone in sorted(set(ours) | set(theirs)):
        calls = sorted(ours.get(phone, []))
        if len(calls) != len(theirs.get(phone, ())):
            problems.append(f"{phone}: {len(calls)} robot calls in the CRM, {len(theirs.get(phone, ()))} in the CDR")
        for (s1, e1), (s2, _) in zip(calls, calls[1:], strict=False):
            if e1 is None or s2 < e1:
                problems.append(f"{phone}: two robot calls at once ({s1:.0f}-{e1}, {s2:.0f})")
    return problems


async def robots_idle(server: BenchServer, timeout: float = 180.0) -> None:
    """Wait until no robot call is in progress (its CDR is written when it ends)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        con = sqlite3.connect(f"file:{server.settings.db_path}?mode=ro", uri=True)
        try:
            busy = con.execute("SELECT count(*) FROM robot_calls WHERE outcome = ''").fetchone()[0]
        finally:
            con.close()
        if not busy:
            await asyncio.sleep(3)  # Asterisk writes the CDR row as the channel goes
            return
        await asyncio.sleep(1)
    print(f"robot calls still in progress after {timeout:.0f} s")


async def wait_live(server: BenchServer, timeout: float = 10.0) -> float | None:
    """Seconds until health shows live calls again (None: it never did)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if health(server.settings.web.port).get("live_calls", 0) > 0:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


async def main(args: argparse.Namespace) -> None:
    server = BenchServer(BENCH, bench_config(BENCH / "state", base=23000, web=28280))
    settings = server.settings
    work = BENCH / "run"
    work.mkdir()
    phones = []
    try:
        await server.init()
        await server.start()
        phones += [
            await start_desk_phone(settings, "101", work, ring_ms=1000, calls=0),
            await start_desk_phone(settings, "102", work, ring_ms=2000, calls=0),
            await start_desk_phone(settings, "103", work, ring_ms=NEVER, calls=0),
        ]
        since = time.time()
        callers = [f"+7926{random.randint(0, 9_999_999):07d}" for _ in range(args.calls)]
        load = await start_operator_load(settings, "74951110002", work, callers, total=args.calls,
                                         concurrent=args.concurrent, rate=1.0, talk_ms=20_000,
                                         talk_ms_max=40_000, name="storm")
        phones.append(load)
        panel = await server.panel()
        robots = robot_appointments(server)
        for appointment, _ in robots:
            await panel.post("/escort/call-now", appointment=str(appointment))
        await panel.close()
        print(f"{args.calls} calls, up to {args.concurrent} at once (talk 20-40 s); robot calling "
              f"{len(robots)} demo patients; kill -9 x{args.kills}", flush=True)
        back = []
        for n in range(args.kills):
            await asyncio.sleep(random.uniform(4, 15))
            up = health(settings.web.port).get("live_calls", 0)
            await server.kill9()
            await asyncio.sleep(random.uniform(0.2, 2))
            t0 = time.monotonic()
            await server.start()
            healthy = time.monotonic() - t0
            live = await wait_live(server)
            back.append(healthy)
            cards = f"back after {live:.1f} s" if live is not None else "NOT back"
            print(f"kill {n + 1}: {up} live calls before; healthy again after {healthy:.1f} s; "
                  f"live cards {cards}", flush=True)
        rc = await load.wait(args.calls + 120)
        await robots_idle(server)
        for p in phones:
            p.kill()
        calls, bad = compare_with_cdr(settings, since)
        robot_problems = robot_check(server, since)
        print(f"operator calls: {calls} in the CDR; SIPp exit code {rc} (0: every caller's call ended as meant)")
        print(f"records missing, doubled or disagreeing with the CDR: {len(bad)}")
        for line in bad[:10]:
            print("  ", line)
        print(f"robot jobs run twice or disagreeing with the CDR: {len(robot_problems)}")
        for line in robot_problems:
            print("  ", line)
        if args.asterisk_restarts:
            await asterisk_restarts(server, args)
    finally:
        for p in phones:
            p.kill()
        await server.stop()
        await server.stop_asterisk()


async def asterisk_restarts(server: BenchServer, args: argparse.Namespace) -> None:
    """Asterisk itself restarted under load (it ends its calls): AMI and ARI back, the robot's
    app registered, the robot calling again, every call Asterisk ended in the CRM once."""
    settings = server.settings
    work = BENCH / "restart"
    work.mkdir()
    phones = [await start_desk_phone(settings, "101", work, ring_ms=1000, calls=0),
              await start_desk_phone(settings, "102", work, ring_ms=2000, calls=0),
              await start_desk_phone(settings, "103", work, ring_ms=NEVER, calls=0)]
    since = time.time()
    callers = [f"+7926{random.randint(0, 9_999_999):07d}" for _ in range(args.calls)]
    load = await start_operator_load(settings, "74951110002", work, callers, total=args.calls,
                                     concurrent=args.concurrent, rate=1.0, talk_ms=10_000,
                                     talk_ms_max=20_000, name="restart")
    try:
        for n in range(args.asterisk_restarts):
            await asyncio.sleep(random.uniform(8, 15))
            proc = await asyncio.create_subprocess_exec(
                str(CLINIC_PBX), "asterisk", "restart", env=server.env, stdout=asyncio.subprocess.DEVNULL)
            await proc.wait()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30:
                h = health(settings.web.port)
                if h.get("ami") and h.get("ari"):
                    break
                await asyncio.sleep(0.1)
            print(f"Asterisk restart {n + 1}: AMI and ARI (app registered) back "
                  f"{time.monotonic() - t0:.1f} s after Asterisk was up", flush=True)
        panel = await server.panel()
        robots = robot_appointments(server)
        for appointment, _ in robots:
            await panel.post("/escort/call-now", appointment=str(appointment))
        await panel.close()
        await load.wait(args.calls + 120)
        await robots_idle(server)
        calls, bad = compare_with_cdr(settings, since)
        print(f"across Asterisk restarts: {calls} operator calls in the CDR; records missing, doubled or "
              f"disagreeing: {len(bad)}")
        for line in bad[:10]:
            print("  ", line)
        problems = robot_check(server, since)
        print(f"robot calls after the restarts: {len(problems)} problems")
        for line in problems:
            print("  ", line)
    finally:
        for p in [*phones, load]:
            p.kill()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--calls", type=int, default=80)
    ap.add_argument("--asterisk-restarts", type=int, default=2,
                    help="then restart Asterisk itself under load N times (0: skip)")
    asyncio.run(main(ap.parse_args()))

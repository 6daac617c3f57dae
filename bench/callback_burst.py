"""The website callback robot under a burst: N requests arrive at once through the signed webhook,
three administrators (SIPp desk phones 101-103) answer and press 1, and the patients (the SIPp
operator) answer and talk 12 s. Printed: requests per minute, the robot process's CPU and
Asterisk's, and correctness: every request exactly one outcome, no request with two attempts at
once, no patient called twice at once, as many bridged calls in Asterisk's CDR as contacts.

    .venv/bin/python -u bench/callback_burst.py [--requests 200] [--lines 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import shutil
import sqlite3
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from bench.load_sipp import proc_stats  # noqa: E402
from crm import callbacks, signatures  # noqa: E402
from crm.clock import SettableClock  # noqa: E402
from crm.demo import load_demo  # noqa: E402
from crm.rules import callback as cr  # noqa: E402
from pbx.app import SERVICES, build_app  # noqa: E402
from pbx.asterisk.embedded import EmbeddedAsterisk  # noqa: E402
from pbx.outbound.sipp import start_desk_phone, start_operator_uas  # noqa: E402
from pbx.settings import (  # noqa: E402
    PROJECT_DIR,
    AsteriskSettings,
    RobotSettings,
    Settings,
    with_generated_secrets,
)

TZ = ZoneInfo("Europe/Moscow")
STATE = PROJECT_DIR / ".local" / "bench-callback"
SECRET = "bench-secret"


def settings() -> Settings:
    asterisk = AsteriskSettings(sip_port=28060, ami_port=28038, http_port=28088, agi_port=28573,
                                rtp_start=37000, rtp_end=38999, operator_port=28090, phone_port_base=28070)
    robot = RobotSettings(tts_rate=320, tick_seconds=0.2)
    return with_generated_secrets(Settings(state_dir=STATE, asterisk=asterisk, robot=robot, log_level="WARNING"))


def overlaps(intervals: list[tuple[float, float]]) -> bool:
    intervals = sorted(intervals)
    return any(b[0] < a[1] for a, b in zip(intervals, intervals[1:], strict=False))


async def run(n: int, lines: int, talk_ms: int, ast: EmbeddedAsterisk) -> None:
    s = dataclasses.replace(settings(), database=STATE / "crm.sqlite")
    s.db_path.unlink(missing_ok=True)
    work = STATE / "sipp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    day = datetime.now(TZ).replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while day.isoweekday() > 5:
        day += timedelta(days=1)
    clock = SettableClock(day.timestamp())
    app = build_app(s, manage_asterisk=False, clock=clock, run_escort=False)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    client = TestClient(srv)
    services = app[SERVICES]
    phones = []
    try:
        assert services.ari is not None and await services.ari.wait_connected(10)
        db, svc = services.db, services.callbacks
        assert svc is not None
        await load_demo(db, now=clock.now(), robot_patients=False)
        await callbacks.save_source(db, "bench", "НаПоправку", secret=SECRET)
        await callbacks.save_settings(db, cr.CallbackSettings(
            clinic_target="queue", max_concurrent_calls=lines, ring_clinic_seconds=15, ring_patient_seconds=15,
            key_wait_seconds=5, sms_after=3))
        phones = [await start_desk_phone(s, ext, work, ring_ms=400, keys="1", keys_after_ms=1200, calls=0)
                  for ext in ("101", "102", "103")]
        phones.append(await start_operator_uas(s, work, ring_ms=600, hangup_ms=talk_ms, calls=0))
        await asyncio.sleep(0.5)
        for _ in range(50):  # the queue's members, for «the free phones of the queue»
            if services.calls is not None and services.calls.members.get("reception-ringall"):
                break
            await asyncio.sleep(0.1)
        # the burst: n signed requests at once
        t_in = time.monotonic()

        async def post(i: int) -> int:
            body = json.dumps({"source": "bench", "external_id": f"b{i}", "name": f"Пациент {i}",
                               "phone": f"+7903{1000000 + i:07d}", "doctor": "Кузнецова Ольга Викторовна",
                               "service": "Чистка"}, ensure_ascii=False).encode()
            stamp = str(int(clock.now()))
            r = await client.post("/api/v1/requests", data=body, headers={
                "Content-Type": "application/json", signatures.TIMESTAMP_HEADER: stamp,
                signatures.SIGNATURE_HEADER: signatures.sign(SECRET, stamp, body)})
            return r.status

        statuses = await asyncio.gather(*(post(i) for i in range(n)))
        intake = time.monotonic() - t_in
        ast_pid = ast.pid()
        cpu0, ast0 = resource.getrusage(resource.RUSAGE_SELF), proc_stats(ast_pid)[0] if ast_pid else 0.0
        t0 = last = time.monotonic()
        most = 0
        while True:
            clock.advance(time.monotonic() - last)  # the clinic's time runs with the wall clock here
            last = time.monotonic()
            await svc.tick()
            most = max(most, svc.active)
            left = db.query_now("SELECT COUNT(*) FROM callback_requests WHERE state = 'open'")[0][0]
            if not left and not svc.calls:
                break
            if not svc.calls:  # nothing on: the next attempt is due later (a retry): move time on
                due = db.query_now("SELECT MIN(due_ts) FROM jobs WHERE kind = 'callback' AND state = 'pending'")[0][0]
                if due and due > clock.now():
                    clock.set(due)
            await asyncio.sleep(0.2)
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        ast1 = proc_stats(ast_pid)[0] if ast_pid else 0.0
        robot_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        outcomes = dict(db.query_now("SELECT outcome, COUNT(*) FROM callback_requests GROUP BY outcome"))
        attempts = db.query_now("SELECT request_id, started_ts, ended_ts, outcome, linkedid, admin_ts, patient_ts,"
                                " talk_seconds FROM callback_attempts")
        per_request: dict[int, list[tuple[float, float]]] = {}
        for a in attempts:
            per_request.setdefault(a[0], []).append((a[1], a[2] or a[1]))
        double = sum(overlaps(v) for v in per_request.values())
        contacted = [a for a in attempts if a[3] == cr.CONTACTED]
        cdr = sqlite3.connect(f"file:{s.cdr_db_path}?mode=ro", uri=True)
        marks = ",".join("?" * len(contacted))
        bridged = cdr.execute(
            "SELECT COUNT(DISTINCT linkedid) FROM cdr WHERE disposition = 'ANSWERED' AND dstchannel LIKE"
            f" 'PJSIP/operator%' AND linkedid IN ({marks})", [a[4] for a in contacted]).fetchone()[0] if contacted else 0
        cdr.close()
        print(f"{n} requests in a burst, {lines} robot lines, 3 administrators, the patient talks {talk_ms / 1000:.0f} s:")
        print(f"  webhook: {n} signed requests in {intake:.2f} s ({n / intake:.0f}/s); answers {sorted(set(statuses))}")
        print(f"  worked through in {wall:.0f} s -> {n / wall * 60:.1f} requests/min; at most {most} robot calls at once")
        print(f"  robot process CPU {robot_cpu:.1f} s ({100 * robot_cpu / wall:.0f}% of one core);"
              f" Asterisk CPU {ast1 - ast0:.1f} s ({100 * (ast1 - ast0) / wall:.0f}%)")
        print(f"  requests closed as {outcomes}; attempts {len(attempts)} (outcomes "
              f"{dict(db.query_now('SELECT outcome, COUNT(*) FROM callback_attempts GROUP BY outcome'))})")
        print(f"  correctness: requests with two attempts at once {double}; contacted {len(contacted)},"
              f" bridged to the operator in Asterisk's CDR {bridged}")
        if double or len(contacted) != bridged or sum(outcomes.values()) != n or outcomes.get("", 0):
            print("  !! not every request ended exactly once, or the CDR disagrees")
    finally:
        for p in phones:
            p.kill()
        await client.close()
        await srv.close()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--lines", type=int, default=3)
    p.add_argument("--talk-ms", type=int, default=12000)
    args = p.parse_args()
    ast = EmbeddedAsterisk(settings())
    if not ast.installed:
        sys.exit("Asterisk is not installed: run `make test` or scripts/install-asterisk.sh")
    await asyncio.to_thread(ast.stop)  # one left by an interrupted run: its CDR file goes next
    shutil.rmtree(STATE / "asterisk" / "var" / "log", ignore_errors=True)
    await asyncio.to_thread(ast.start)
    try:
        await run(args.requests, args.lines, args.talk_ms, ast)
    finally:
        await asyncio.to_thread(ast.stop)


if __name__ == "__main__":
    asyncio.run(main())

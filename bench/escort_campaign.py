"""A confirmation campaign of 1,000 appointments through the real Asterisk: the robot calls
every patient (patient-sim numbers +7 9991 xxx-xx-xx answer and press 1) with N simultaneous
calls. Printed: greeting TTS rate, calls per minute, the robot's CPU (this process: the
escort service, ARI, the IVR; % of one core) and Asterisk's, and correctness: every
appointment confirmed, exactly one robot call each, as many ANSWERED rows in Asterisk's CDR.

    .venv/bin/python bench/escort_campaign.py [--appointments 1000] [--concurrency 20,50]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import shutil
import sqlite3
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestServer  # noqa: E402

from bench.load_sipp import proc_stats  # noqa: E402
from crm import escort, patients, schedule  # noqa: E402
from crm.clock import SettableClock  # noqa: E402
from crm.rules import escort as rules  # noqa: E402
from crm.rules.escort import EscortSettings  # noqa: E402
from pbx.app import SERVICES, build_app  # noqa: E402
from pbx.asterisk.embedded import EmbeddedAsterisk  # noqa: E402
from pbx.settings import (  # noqa: E402
    PROJECT_DIR,
    AsteriskSettings,
    RobotSettings,
    Settings,
    with_generated_secrets,
)

TZ = ZoneInfo("Europe/Moscow")
STATE = PROJECT_DIR / ".local" / "bench-escort"


def settings() -> Settings:
    asterisk = AsteriskSettings(sip_port=27060, ami_port=27038, http_port=27088, agi_port=27573,
                                rtp_start=35000, rtp_end=36999, operator_port=27090, phone_port_base=27070)
    robot = RobotSettings(dial="Local/{number}@patient-sim", ring_seconds=15, tick_seconds=0.2)
    return with_generated_secrets(Settings(state_dir=STATE, asterisk=asterisk, robot=robot, log_level="WARNING"))


async def seed(db, n: int, day: datetime) -> list[int]:
    """n patients, one appointment each, spread over enough doctors for one day."""
    doctors = (n + 21) // 22
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO branches (name, message_name) VALUES ('Бенч', 'Бенч')")
        for d in range(doctors):
            doc = (await tx.execute(
                "INSERT INTO doctors (full_name, specialty, branch_id) VALUES (?, 'стоматолог-терапевт', 1)",
                (f"Врачев{d} Иван Петрович",),
            )).lastrowid
            await tx.execute("INSERT INTO working_hours (doctor_id, weekday, start_minute, end_minute,"
                             " slot_minutes) VALUES (?, ?, 540, 1200, 30)", (doc, day.weekday()))
    ids = []
    booked_at = (day - timedelta(days=5)).timestamp()
    for i in range(n):
        pid = await patients.add_patient(db, "Бенчев", "Пётр", "Ильич", phone_numbers=(f"+79991{i:06d}",))
        starts = day + timedelta(minutes=30 * (i % 22))
        ids.append(await schedule.book(db, patient_id=pid, doctor_id=1 + i // 22, starts_at=starts, minutes=30,
                                       now=booked_at))
    return ids


async def run_level(n: int, concurrency: int, ast: EmbeddedAsterisk) -> None:
    day = datetime.combine(datetime.now(TZ).date() + timedelta(days=30), datetime.min.time(), TZ)
    day = day.replace(hour=9)
    s = dataclasses.replace(settings(), database=STATE / f"crm-{concurrency}.sqlite")
    s.db_path.unlink(missing_ok=True)
    clock = SettableClock((day - timedelta(days=1)).replace(hour=9, minute=5).timestamp())
    app = build_app(s, manage_asterisk=False, clock=clock, run_escort=False)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    services = app[SERVICES]
    try:
        assert services.ari is not None and await services.ari.wait_connected(10)
        db, service = services.db, services.escort
        assert service is not None
        ids = await seed(db, n, day)
        await escort.save_settings(db, EscortSettings(max_concurrent_calls=concurrency, details_enabled=False,
                                                      reminder_enabled=False))
        # the greetings, rendered ahead (the service does this for the next 24 h; here 4 at a
        # time, so the campaign measured below starts with all of them cached)
        t0 = time.monotonic()
        sem = asyncio.Semaphore(4)

        rendered = 0

        async def render(appt: int) -> None:
            nonlocal rendered
            subject = await escort.subject(db, appt, TZ)
            text = rules.robot_text(subject.wording)
            rendered += not (service.prompts.folder / f"{service.prompts.key(text)}.wav").exists()
            async with sem:
                await service.prompts.path(text)

        await asyncio.gather(*(render(a) for a in ids))
        tts = time.monotonic() - t0
        ast_pid = ast.pid()
        cpu0, ast0 = resource.getrusage(resource.RUSAGE_SELF), proc_stats(ast_pid)[0] if ast_pid else 0.0
        t0 = time.monotonic()
        while True:
            await service.tick()
            left = db.query_now("SELECT COUNT(*) FROM jobs WHERE scenario = 'confirmation' AND state IN"
                                " ('pending', 'running')")[0][0]
            if not left and not service.calls:
                break
            await asyncio.sleep(0.2)
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        ast1 = proc_stats(ast_pid)[0] if ast_pid else 0.0
        robot_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        confirmed = db.query_now("SELECT COUNT(*) FROM appointments WHERE status = 'confirmed'")[0][0]
        calls = db.query_now("SELECT COUNT(*), COUNT(DISTINCT appointment_id) FROM robot_calls")[0]
        outcomes = db.query_now("SELECT outcome, COUNT(*) FROM robot_calls GROUP BY outcome")
        cdr = sqlite3.connect(f"file:{s.cdr_db_path}?mode=ro", uri=True)
        answered = cdr.execute("SELECT COUNT(DISTINCT linkedid) FROM cdr WHERE linkedid LIKE ? AND"
                               " disposition = 'ANSWERED'", ("robot-%",)).fetchone()[0]
        cdr.close()
        print(f"{n} appointments, {concurrency} simultaneous calls:")
        if rendered:
            print(f"  greetings rendered (pyttsx3+espeak-ng+sox, 4 at a time): {rendered} in {tts:.0f} s,"
                  f" {rendered / tts:.1f}/s")
        else:
            print("  greetings: all from the cache")
        print(f"  campaign {wall:.0f} s -> {n / wall * 60:.0f} calls/min")
        print(f"  robot process CPU {robot_cpu:.1f} s ({100 * robot_cpu / wall:.0f}% of one core);"
              f" Asterisk CPU {ast1 - ast0:.1f} s ({100 * (ast1 - ast0) / wall:.0f}%)")
        print(f"  confirmed {confirmed}/{n}; robot calls {calls[0]} for {calls[1]} appointments;"
              f" outcomes {dict(outcomes)}; CDR answered (all runs) {answered}")
        if confirmed != n or calls[0] != n:
            print("  !! not every appointment was confirmed exactly once")
    finally:
        await srv.close()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--appointments", type=int, default=1000)
    p.add_argument("--concurrency", default="20,50")
    args = p.parse_args()
    shutil.rmtree(STATE / "asterisk" / "var" / "log", ignore_errors=True)
    ast = EmbeddedAsterisk(settings())
    if not ast.installed:
        sys.exit("Asterisk is not installed: run `make test` or scripts/install-asterisk.sh")
    await asyncio.to_thread(ast.start)
    try:
        for level in (int(x) for x in args.concurrency.split(",")):
            await run_level(args.appointments, level, ast)
    finally:
        await asyncio.to_thread(ast.stop)


if __name__ == "__main__":
    asyncio.run(main())

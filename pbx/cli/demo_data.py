"""``clinic-pbx init --demo`` (issue #33): the demo clinic as a new user should first see it —
its structure (``crm.demo``), its MIS export (doctors, 300 patients with representatives, the
past weeks' appointments) loaded through the import like a real clinic's, and a past month of
calls, bookings, robot calls and requests (``crm.demo_month``) with recordings that speak."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from crm import callbacks, demo, demo_month
from crm.db import Database
from crm.demo_export import (
    APPOINTMENT_HEADERS,
    DOCTOR_HEADERS,
    PATIENT_HEADERS,
    appointment_rows,
    doctor_rows,
    patient_rows,
    write_csv,
)
from crm.rules.mis_rows import parse_date
from pbx.jobs.mis_import import import_file
from pbx.settings import Settings

log = logging.getLogger(__name__)
PATIENTS, DOCTORS, APPOINTMENTS = 300, 4, 600
CONVERSATION = ("Клиника Улыбка, администратор Ольга, здравствуйте. Здравствуйте, я хотела бы записаться к"
                " стоматологу на следующей неделе. Конечно, есть время во вторник в десять утра.")


async def import_demo_export(db: Database, today: date, tz: str) -> None:
    """The demo MIS's export through the import, in its order; only past appointments (a future
    one would have the confirmation robot call a made-up number)."""
    folder = Path(tempfile.mkdtemp(prefix="clinic-pbx-demo-"))
    try:
        past = [r for r in appointment_rows(APPOINTMENTS, PATIENTS, DOCTORS, today) if parse_date(r[3]) < today]
        files = {
            "doctors": write_csv(folder / "врачи.csv", DOCTOR_HEADERS, doctor_rows(DOCTORS, demo.DEMO_BRANCH)),
            "patients": write_csv(folder / "пациенты.csv", PATIENT_HEADERS, patient_rows(PATIENTS)),
            "appointments": write_csv(folder / "приёмы.csv", APPOINTMENT_HEADERS, iter(past)),
        }
        for kind, path in files.items():
            await import_file(db, path, kind, today=today, time_zone=tz)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def conversation_wav(folder: Path) -> bytes:
    """A few seconds of speech as Asterisk records a call (WAV, 8 kHz, 16-bit); empty when
    espeak-ng or sox is missing (the month then has no recordings)."""
    out = folder / "demo-conversation.wav"
    if not await asyncio.to_thread(out.exists):
        await asyncio.to_thread(lambda: folder.mkdir(parents=True, exist_ok=True))
        raw = folder / "demo-conversation.raw.wav"
        for args in (["espeak-ng", "-v", "ru", "-w", str(raw), CONVERSATION],
                     ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out)]):
            try:
                proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.PIPE)
            except OSError as exc:
                log.warning("demo recordings: %s", exc)
                return b""
            _, err = await proc.communicate()
            if proc.returncode != 0:
                log.warning("demo recordings: %s: %s", args[0], err.decode(errors="replace").strip()[:200])
                return b""
        raw.unlink(missing_ok=True)
    return await asyncio.to_thread(out.read_bytes)


DEMO_EMAILS = "reception@demo-clinic.example"


async def load_demo_clinic(db: Database, settings: Settings, now: float) -> list[str]:
    """What ``init --demo`` adds, as lines to print; nothing for a CRM that has patients."""
    added = await demo.load_demo(db, now, tz=settings.time_zone)
    if not added:
        return []
    tz = ZoneInfo(settings.time_zone)
    today = datetime.fromtimestamp(now, tz).date()
    await import_demo_export(db, today, settings.time_zone)
    sound = await conversation_wav(settings.state_dir / "demo")
    month = await demo_month.add_month(db, now, tz, settings.recordings_dir, sound)
    # the robot's letters to the clinic have somewhere to go (the demo's mail is logged, not sent)
    robot = await callbacks.settings(db)
    await callbacks.save_settings(db, dataclasses.replace(robot, emails=robot.emails or DEMO_EMAILS))
    return [f"demo clinic: {added} patients, then {PATIENTS} more from its MIS export (see «Импорт из МИС»)",
            f"demo month: {month.calls} calls, {month.bookings} bookings from calls, {month.robot_calls} robot calls,"
            f" {month.requests} callback requests, {month.recordings} recordings"]

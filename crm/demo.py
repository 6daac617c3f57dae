"""Demo clinic data for ``make run``: a branch, its numbers and desk phones, staff, a
contractor, a guardian, and patients whose numbers the demo call uses."""

from __future__ import annotations

import secrets
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from crm import callbacks, comments, patients, schedule, tags, tasks
from crm.db import Database

DEMO_SOURCE = "napopravku"
DEMO_BRANCH = "Клиника «Улыбка» на Тверской"

DEMO_PATIENTS = (
    ("Петрова", "Анна", "Сергеевна", "1985-03-14", ("+79161234567",)),
    ("Иванов", "Иван", "Иванович", "1979-11-02", ("+79031112233", "+74957654321")),
    ("Смирнова", "Мария", "Олеговна", "2015-06-30", ()),
    ("Смирнов", "Олег", "Петрович", "2018-01-21", ()),
    # the robot's demo patients: patient-sim answers these numbers (asterisk-config)
    ("Сидоров", "Пётр", "Ильич", "1990-04-12", ("+79990000001",)),  # presses 1
    ("Кузьмина", "Ольга", "Андреевна", "1972-09-03", ("+79990000010",)),  # 0, then 1
    ("Белова", "Нина", "Павловна", "1965-12-30", ("+79990000099",)),  # says nothing
)


async def load_demo(db: Database, now: float | None = None, tz: str = "Europe/Moscow", *,
                    robot_patients: bool = True) -> int:
    """Idempotent: does nothing when the clinic already has patients. ``robot_patients``
    adds the three patient-sim patients with appointments for the robot."""
    if await patients.count(db):
        return 0
    ids = []
    for last, first, middle, born, nums in DEMO_PATIENTS if robot_patients else DEMO_PATIENTS[:4]:
        ids.append(await patients.add_patient(db, last, first, middle, birth_date=born,
                                              phone_numbers=nums))
    async with db.transaction() as tx:
        branch = (await tx.execute(
            "INSERT INTO branches (name, message_name, time_zone) VALUES (?, 'Улыбка', 'Europe/Moscow')",
            (DEMO_BRANCH,))).lastrowid
        # the demo's numbers route as the clinic's own would (crm.telephony): the main one rings
        # every reception phone, the second one rings them in order
        for did, channel, script, queue in (
            ("74951110001", "Сайт", "Поздоровайтесь и назовите клинику; уточните, что беспокоит.", "reception-ringall"),
            ("74951110002", "ПроДокторов", "Спросите, к какому врачу пациент записывался на сайте.", "reception-linear"),
        ):
            await tx.execute(
                "INSERT INTO clinic_numbers (did, branch_id, ad_channel, script, queue) VALUES (?, ?, ?, ?, ?)",
                (did, branch, channel, script, queue),
            )
        await tx.execute("UPDATE telephony_revision SET revision = revision + 1")
        for ext in ("101", "102", "103"):
            await tx.execute(
                "INSERT INTO desk_phones (extension, branch_id, label) VALUES (?, ?, ?)",
                (ext, branch, f"Ресепшн {ext[-1]}"),
            )
        doctor = (await tx.execute(
            "INSERT INTO employees (full_name, position, branch_id)"
            " VALUES ('Кузнецова Ольга Викторовна', 'стоматолог-терапевт', ?)", (branch,)
        )).lastrowid
        await tx.execute(
            "INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES ('+79057778899', 'employee', ?)",
            (doctor,),
        )
        lab = (await tx.execute("INSERT INTO contractors (name) VALUES ('Зуботехническая лаборатория «Дента»')")).lastrowid
        await tx.execute(
            "INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES ('+74950001122', 'contractor', ?)",
            (lab,),
        )
        mother = (await tx.execute(
            "INSERT INTO guardians (full_name) VALUES ('Смирнова Елена Ивановна')"
        )).lastrowid
        for kid in ids[2:4]:
            await tx.execute(
                "INSERT INTO guardianships (guardian_id, patient_id, relation) VALUES (?, ?, 'мать')",
                (mother, kid),
            )
        await tx.execute(
            "INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES ('+79265554433', 'guardian', ?)",
            (mother,),
        )
    await _schedule(db, ids, doctor, branch, time.time() if now is None else now, ZoneInfo(tz))
    await comments.ensure_default_topics(db)
    # the aggregator's requests for the website callback robot (`clinic-pbx demo-request`)
    await callbacks.save_source(db, DEMO_SOURCE, "НаПоправку", secret=secrets.token_urlsafe(24))
    why = await tags.create_group(db, "Почему не записался")
    for name in ("Не подошло время", "Нет свободных окон", "Не устроила цена"):
        await tags.add_tag(db, why, name)
    area = await tags.create_group(db, "Направление")
    for name in ("Терапия", "Имплантация", "Ортодонтия"):
        await tags.add_tag(db, area, name)
    return len(ids)


async def _schedule(db: Database, ids: list[int], employee: int | None, branch: int | None,
                    now: float, tz: ZoneInfo) -> None:
    """Two doctors working Mon-Sat 09:00-20:00; Петрова has a history with the clinic."""
    async with db.transaction() as tx:
        doctors = []
        for name, specialty, emp in (
            ("Кузнецова Ольга Викторовна", "стоматолог-терапевт", employee),
            ("Орлов Дмитрий Андреевич", "хирург-имплантолог", None),
        ):
            doc = (await tx.execute(
                "INSERT INTO doctors (full_name, specialty, branch_id, employee_id) VALUES (?, ?, ?, ?)",
                (name, specialty, branch, emp),
            )).lastrowid
            doctors.append(int(doc or 0))
            for weekday in range(6):
                await tx.execute(
                    "INSERT INTO working_hours (doctor_id, weekday, start_minute, end_minute, slot_minutes)"
                    " VALUES (?, ?, 540, 1200, 30)",
                    (doc, weekday),
                )
        await tx.execute(
            "UPDATE patients SET balance = -1500, notes = 'Боится уколов, предпочитает утро',"
            " extra_notes = 'Аллергия на лидокаин', family_id = ? WHERE id = ?", (ids[0], ids[0])
        )
        # family_id names the family by one member's id; Петрова and Иванов are a family
        await tx.execute("UPDATE patients SET family_id = ? WHERE id = ?", (ids[0], ids[1]))
        today = datetime.fromtimestamp(now, tz).date()
        await tx.execute(
            "INSERT INTO insurance_policies (patient_id, company, number, valid_from, valid_to)"
            " VALUES (?, 'АльфаСтрахование', 'ДМС-0042-7781', ?, ?)",
            (ids[0], (today - timedelta(days=100)).isoformat(), (today + timedelta(days=265)).isoformat()),
        )
    history = (
        (ids[0], doctors[0], -60, "completed", 4500.0, "self"),
        (ids[0], doctors[0], -30, "completed", 3200.0, "insurance"),
        (ids[0], doctors[1], -10, "no_show", 0.0, "self"),
        (ids[1], doctors[1], -20, "completed", 25000.0, "self"),
    )
    for patient, doctor, days, status, price, payer in history:
        day = _workday(today + timedelta(days=days))
        starts = datetime(day.year, day.month, day.day, 10, 0, tzinfo=tz)
        appt = await schedule.book(db, patient_id=patient, doctor_id=doctor, starts_at=starts,
                                   minutes=30, now=starts.timestamp() - 86400 * 3)
        await schedule.set_status(db, appt, status)
        async with db.transaction() as tx:
            await tx.execute("UPDATE appointments SET price = ?, payer = ? WHERE id = ?",
                             (price, payer, appt))
    # appointments the day after tomorrow: the robot calls these patients tomorrow 09:00-20:00
    # (or at once from «Сопровождение» -> «Позвонить сейчас»)
    later = _workday(today + timedelta(days=2))
    for n, patient in enumerate(ids[4:7]):
        starts = datetime(later.year, later.month, later.day, 11 + n, 0, tzinfo=tz)
        await schedule.book(db, patient_id=patient, doctor_id=doctors[n % 2], starts_at=starts, minutes=30,
                            now=now - 3 * 86400)
    await tasks.add_task(db, ids[0], "Позвонить: подобрать время для гигиены",
                            today + timedelta(days=1), None)
    await schedule.add_waiting(db, ids[1], "хирург-имплантолог", "Хочет пораньше", None)


def _workday(day: date) -> date:
    return day - timedelta(days=1) if day.weekday() == 6 else day

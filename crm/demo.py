"""Demo clinic data for ``make run``: a branch, its numbers and desk phones, staff, a
contractor, a guardian, and patients whose numbers the demo call uses."""

from __future__ import annotations

from crm import patients
from crm.db import Database

DEMO_PATIENTS = (
    ("Петрова", "Анна", "Сергеевна", "1985-03-14", ("+79161234567",)),
    ("Иванов", "Иван", "Иванович", "1979-11-02", ("+79031112233", "+74957654321")),
    ("Смирнова", "Мария", "Олеговна", "2015-06-30", ()),
    ("Смирнов", "Олег", "Петрович", "2018-01-21", ()),
)


async def load_demo(db: Database) -> int:
    """Idempotent: does nothing when the clinic already has patients."""
    if await patients.count(db):
        return 0
    ids = []
    for last, first, middle, born, nums in DEMO_PATIENTS:
        ids.append(await patients.add_patient(db, last, first, middle, birth_date=born,
                                              phone_numbers=nums))
    async with db.transaction() as tx:
        branch = (await tx.execute(
            "INSERT INTO branches (name, message_name, time_zone)"
            " VALUES ('Клиника «Улыбка» на Тверской', 'Улыбка', 'Europe/Moscow')"
        )).lastrowid
        for did, channel, script in (
            ("74951110001", "Сайт", "Поздоровайтесь и назовите клинику; уточните, что беспокоит."),
            ("74951110002", "ПроДокторов", "Спросите, к какому врачу пациент записывался на сайте."),
        ):
            await tx.execute(
                "INSERT INTO clinic_numbers (did, branch_id, ad_channel, script) VALUES (?, ?, ?, ?)",
                (did, branch, channel, script),
            )
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
        for kid in ids[2:]:
            await tx.execute(
                "INSERT INTO guardianships (guardian_id, patient_id, relation) VALUES (?, ?, 'мать')",
                (mother, kid),
            )
        await tx.execute(
            "INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES ('+79265554433', 'guardian', ?)",
            (mother,),
        )
    return len(DEMO_PATIENTS)

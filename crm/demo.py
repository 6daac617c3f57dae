"""Demo clinic data for ``make run``: a few patients whose numbers the demo call uses."""

from __future__ import annotations

from crm import patients
from crm.db import Database

DEMO_PATIENTS = (
    ("Петрова", "Анна", "Сергеевна", "1985-03-14", ("+79161234567",)),
    ("Иванов", "Иван", "Иванович", "1979-11-02", ("+79031112233", "+74957654321")),
    ("Смирнова", "Мария", "Олеговна", "2015-06-30", ("+79265554433",)),
    ("Смирнов", "Олег", "Петрович", "2018-01-21", ("+79265554433",)),
)


async def load_demo(db: Database) -> int:
    """Idempotent: does nothing when the clinic already has patients."""
    if await patients.count(db):
        return 0
    for last, first, middle, born, nums in DEMO_PATIENTS:
        await patients.add_patient(db, last, first, middle, birth_date=born, phone_numbers=nums)
    return len(DEMO_PATIENTS)

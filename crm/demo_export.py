"""A generated export of a clinic's MIS, as IDENT or Инфоклиника write theirs: patients (a child
in every ten, represented by the previous patient and sharing her mobile), doctors and
appointments around a given day; as CSV in Windows-1251 with ``;`` or as XLSX. The demo clinic
is loaded through the import from it (``clinic-pbx init --demo``); the import's tests and
``bench/mis_import.py`` use it too."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

PATIENT_HEADERS = ["Код пациента", "Фамилия", "Имя", "Отчество", "Дата рождения", "Пол", "Мобильный телефон",
                   "Домашний телефон", "E-mail", "Комментарий", "Код представителя"]
DOCTOR_HEADERS = ["Код врача", "ФИО", "Специальность", "Филиал"]
APPOINTMENT_HEADERS = ["Код записи", "Код пациента", "Код врача", "Дата", "Время", "Длительность", "Статус",
                       "Комментарий"]
_LAST = ["Иванов", "Петров", "Сидоров", "Смирнов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Козлов", "Новиков"]
_FIRST_M = ["Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Артём", "Илья"]
_FIRST_F = ["Анна", "Мария", "Елена", "Ольга", "Татьяна", "Наталья", "Ирина", "Светлана"]
_MIDDLE = ["Александров", "Сергеев", "Петров", "Иванов", "Андреев"]
_STATUSES = ["Запланирован", "Подтвержден", "Отменен", "Пришел", "Не пришел"]


def mobile(i: int) -> str:
    digits = f"916{i:07d}"
    forms = (f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}", f"+7 {digits[:3]} {digits[3:]}",
             f"7{digits}")
    return forms[i % 3]


def birth(i: int, child: bool) -> str:
    day = date(2015, 1, 1) + timedelta(days=i % 2000) if child else date(1950, 1, 1) + timedelta(days=(i * 7) % 15000)
    return (day.strftime("%d.%m.%Y"), day.isoformat(), day.strftime("%d/%m/%Y"))[i % 3]


def patient_rows(count: int, seed: int = 1) -> Iterator[list[str]]:
    rnd = random.Random(seed)
    for i in range(1, count + 1):
        child = i % 10 == 0 and i > 1
        female = child or rnd.random() < 0.6
        last = rnd.choice(_LAST) + ("а" if female else "")
        first = rnd.choice(_FIRST_F if female else _FIRST_M)
        middle = rnd.choice(_MIDDLE) + ("на" if female else "ич")
        phone = mobile(i - 1 if child else i)  # a child shares the representative's mobile
        home = f"8 495 {i % 1000:03d}-{i % 100:02d}-{(i * 7) % 100:02d}" if i % 4 == 0 else ""
        yield [f"P{i}", last, first, middle, birth(i, child), "Ж" if female else "М", phone, home,
               f"p{i}@example.ru" if i % 5 == 0 else "", "", f"P{i - 1}" if child else ""]


def doctor_rows(count: int, branch: str = "") -> Iterator[list[str]]:
    specialties = ["Терапевт", "Стоматолог", "Хирург", "Ортодонт", "Гигиенист"]
    for i in range(1, count + 1):
        yield [f"D{i}", f"{_LAST[i % 10]} {_FIRST_M[i % 8]} {_MIDDLE[i % 5]}ич", specialties[i % 5], branch]


def appointment_rows(count: int, patients: int, doctors: int, today: date, seed: int = 2) -> Iterator[list[str]]:
    """Appointments from 60 days before ``today`` to 29 after, spread day by day; a doctor's 20
    half-hour slots a day mean none overlaps up to 1,800 appointments per doctor."""
    rnd = random.Random(seed)
    for i in range(1, count + 1):
        slot = i - 1
        doctor = slot % doctors + 1
        per_doctor = slot // doctors  # the doctor's n-th appointment
        day = today - timedelta(days=60) + timedelta(days=per_doctor % 90)
        minute = 9 * 60 + (per_doctor // 90 % 20) * 30
        status = _STATUSES[rnd.randrange(5)] if day < today else _STATUSES[rnd.randrange(2)]
        yield [f"A{i}", f"P{rnd.randrange(patients) + 1}", f"D{doctor}", day.strftime("%d.%m.%Y"),
               f"{minute // 60:02d}:{minute % 60:02d}", "30", status, ""]


def write_csv(path: Path, headers: list[str], rows: Iterator[list[str]], encoding: str = "cp1251",
              delimiter: str = ";") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(headers)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, headers: list[str], rows: Iterator[list[str]]) -> Path:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Пациенты")
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path

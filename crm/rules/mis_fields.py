"""What an import from a clinic's medical information system (IDENT, MedLock, Инфоклиника, 1С,
a spreadsheet) can carry, per kind of file, and the mapping of a file's columns to those fields:
guessed from the Russian and English headers such exports use, or remembered from the clinic's
previous file. Pure (issue #33)."""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("patients", "doctors", "appointments")
KIND_LABELS = {"patients": "Пациенты", "doctors": "Врачи", "appointments": "Приёмы"}
IGNORED = ""  # a column mapped to nothing


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str  # as the mapping's select shows it
    required: bool = False
    repeatable: bool = False  # several columns may feed it (phones)


FIELDS: dict[str, tuple[Field, ...]] = {
    "patients": (
        Field("external_id", "ID в МИС", required=True),
        Field("full_name", "ФИО одной строкой"),
        Field("last_name", "Фамилия"),
        Field("first_name", "Имя"),
        Field("middle_name", "Отчество"),
        Field("birth_date", "Дата рождения"),
        Field("sex", "Пол"),
        Field("phone", "Телефон", repeatable=True),
        Field("email", "E-mail"),
        Field("notes", "Комментарий"),
        Field("guardian_external_id", "ID представителя в МИС (он тоже пациент)"),
        Field("guardian_name", "ФИО представителя"),
        Field("guardian_phone", "Телефон представителя"),
        Field("guardian_relation", "Кем приходится"),
    ),
    "doctors": (
        Field("external_id", "ID в МИС", required=True),
        Field("full_name", "ФИО", required=True),
        Field("specialty", "Специальность"),
        Field("branch", "Филиал"),
    ),
    "appointments": (
        Field("external_id", "ID приёма в МИС", required=True),
        Field("patient_external_id", "ID пациента в МИС", required=True),
        Field("doctor_external_id", "ID врача в МИС", required=True),
        Field("starts_at", "Дата и время приёма"),
        Field("date", "Дата приёма"),
        Field("time", "Время начала"),
        Field("ends_at", "Время окончания"),
        Field("minutes", "Длительность, мин"),
        Field("status", "Статус"),
        Field("branch", "Филиал"),
        Field("comment", "Комментарий"),
        Field("price", "Стоимость"),
        Field("created_at", "Когда создана запись"),
    ),
}

# normalized header -> field, per kind; the first match wins, so the specific come first
_SYNONYMS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "patients": (
        ("guardian_external_id", ("id представителя", "код представителя", "представитель id",
                                  "id опекуна", "код опекуна", "guardian id")),
        ("guardian_phone", ("телефон представителя", "телефон опекуна", "телефон родителя",
                            "guardian phone")),
        ("guardian_relation", ("кем приходится", "степень родства", "родство", "relation")),
        ("guardian_name", ("представитель", "фио представителя", "опекун", "фио опекуна",
                           "законный представитель", "родитель", "guardian")),
        ("external_id", ("id", "ид", "код", "код пациента", "id пациента", "ид пациента",
                         "номер карты", "№ карты", "номер медкарты", "медкарта", "идентификатор",
                         "внешний id", "patient id", "external id", "uid", "guid")),
        ("full_name", ("фио", "фио пациента", "пациент", "full name", "name")),
        ("last_name", ("фамилия", "last name", "surname")),
        ("first_name", ("имя", "first name")),
        ("middle_name", ("отчество", "middle name", "patronymic")),
        ("birth_date", ("дата рождения", "др", "д р", "birth date", "birthday", "date of birth")),
        ("sex", ("пол", "sex", "gender")),
        ("phone", ("телефон", "тел", "мобильный", "мобильный телефон", "сотовый", "домашний телефон",
                   "рабочий телефон", "телефоны", "контактный телефон", "phone", "mobile")),
        ("email", ("e mail", "email", "эл почта", "электронная почта", "почта")),
        ("notes", ("комментарий", "примечание", "заметки", "comment", "notes")),
    ),
    "doctors": (
        ("external_id", ("id", "ид", "код", "код врача", "id врача", "код сотрудника", "табельный номер",
                         "external id")),
        ("full_name", ("фио", "врач", "фио врача", "сотрудник", "name", "full name")),
        ("specialty", ("специальность", "специализация", "должность", "specialty")),
        ("branch", ("филиал", "клиника", "отделение", "branch")),
    ),
    "appointments": (
        ("patient_external_id", ("id пациента", "код пациента", "ид пациента", "номер карты", "№ карты",
                                 "пациент id", "patient id")),
        ("doctor_external_id", ("id врача", "код врача", "ид врача", "код сотрудника", "врач id",
                                "doctor id")),
        ("external_id", ("id", "ид", "код", "id приема", "код приема", "id записи", "код записи",
                         "номер записи", "appointment id", "external id")),
        ("starts_at", ("дата и время", "дата и время приема", "начало", "начало приема", "starts at", "start")),
        ("date", ("дата", "дата приема", "date")),
        ("time", ("время", "время приема", "время начала", "time")),
        ("ends_at", ("окончание", "конец", "время окончания", "ends at", "end")),
        ("minutes", ("длительность", "продолжительность", "длительность мин", "minutes", "duration")),
        ("status", ("статус", "состояние", "status")),
        ("branch", ("филиал", "клиника", "branch")),
        ("comment", ("комментарий", "примечание", "comment")),
        ("price", ("стоимость", "сумма", "цена", "price")),
        ("created_at", ("дата создания", "создано", "когда создана", "created at", "created")),
    ),
}


def normalize_header(text: str) -> str:
    """"Дата рождения:" and "ДАТА  РОЖДЕНИЯ" are the same header."""
    text = text.lower().replace("ё", "е").replace("№", " № ")
    return " ".join(re.sub(r"[^\w№]+", " ", text).split())


def guess_mapping(kind: str, headers: list[str], remembered: dict[str, str] | None = None) -> list[str]:
    """One field (or IGNORED) per column: the clinic's remembered choice for that header first,
    then the synonyms; a field that cannot repeat is given to its first column only."""
    names = {f.name: f for f in FIELDS[kind]}
    remembered = {normalize_header(k): v for k, v in (remembered or {}).items() if v in names or v == IGNORED}
    taken: set[str] = set()
    mapping: list[str] = []
    for header in headers:
        norm = normalize_header(header)
        field = remembered.get(norm)
        if field is None:
            field = next((name for name, words in _SYNONYMS[kind] if norm in words), IGNORED)
        if field and field in taken and not names[field].repeatable:
            field = IGNORED
        if field:
            taken.add(field)
        mapping.append(field)
    return mapping


def mapping_problems(kind: str, mapping: list[str]) -> list[str]:
    """What the mapping lacks or doubles, in the page's words (empty when it can be used)."""
    fields = {f.name: f for f in FIELDS[kind]}
    problems = [f"Неизвестное поле: {m[:40]}" for m in mapping if m and m not in fields]
    used = [m for m in mapping if m in fields]
    for name in sorted({m for m in used if used.count(m) > 1 and not fields[m].repeatable}):
        problems.append(f"Поле «{fields[name].label}» выбрано для нескольких столбцов")
    for f in FIELDS[kind]:
        if f.required and f.name not in used:
            problems.append(f"Не выбран столбец для поля «{f.label}»")
    if kind == "patients" and "full_name" not in used and not {"last_name", "first_name"} <= set(used):
        problems.append("Нужны столбцы «ФИО одной строкой» или «Фамилия» и «Имя»")
    if kind == "appointments" and "starts_at" not in used and not {"date", "time"} <= set(used):
        problems.append("Нужен столбец «Дата и время приёма» или «Дата приёма» и «Время начала»")
    return problems


def remembered_from(headers: list[str], mapping: list[str]) -> dict[str, str]:
    """What to remember of a used mapping: header -> field, for the next file."""
    return {normalize_header(h): m for h, m in zip(headers, mapping, strict=False) if normalize_header(h)}

"""One row of a clinic's MIS export read into what the CRM stores, or the reasons it cannot be:
each rejection names its line, its column and why, in the words the import page shows. Dates in
the three forms exports use, phones through the phone library, formulas refused. Pure: today
arrives as input (issue #33)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from crm import phones
from crm.rules.mis_fields import FIELDS

NAME_MAX, TEXT_MAX, ID_MAX = 60, 2000, 64
DEFAULT_MINUTES = 30
# strptime cost ~20 us a call (locale lookups): a third of a whole import's parsing
_DAY_FIRST = re.compile(r"(\d{1,2})([./])(\d{1,2})\2(\d{4})")
_YEAR_FIRST = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_TIME = re.compile(r"(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?|(\d{1,2})\.(\d{1,2})")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SEXES = {"м": "male", "муж": "male", "мужской": "male", "m": "male", "male": "male",
          "ж": "female", "жен": "female", "женский": "female", "f": "female", "female": "female"}
STATUSES = {
    "unconfirmed": ("unconfirmed", "запланирован", "запланирована", "записан", "записана", "не подтвержден",
                    "не подтверждена", "новая", "новый", "ожидается", "planned", "scheduled"),
    "confirmed": ("confirmed", "подтвержден", "подтверждена", "подтвержден пациентом"),
    "cancelled": ("cancelled", "canceled", "отменен", "отменена", "отмена", "отменен пациентом"),
    "completed": ("completed", "пришел", "пришла", "завершен", "завершена", "выполнен", "оказан",
                  "состоялся", "состоялась", "принят", "done"),
    "no_show": ("no_show", "не пришел", "не пришла", "неявка", "no show"),
}
_STATUS_OF = {word: status for status, words in STATUSES.items() for word in words}


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    column: str
    reason: str


@dataclass(slots=True)
class Row:
    """A row as the storage writes it: only the fields the file's mapping carries."""

    line: int
    values: dict[str, Any] = field(default_factory=dict)


class _Bad(Exception):
    pass


def _cell(cells: list[str], index: int) -> str:
    return cells[index].strip() if index < len(cells) else ""


def parse_date(text: str) -> date:
    """``31.12.1980``, ``1980-12-31`` or ``31/12/1980`` (a time after it is ignored)."""
    head = text.strip().split(" ")[0].split("T")[0]
    try:
        if m := _DAY_FIRST.fullmatch(head):
            return date(int(m[4]), int(m[3]), int(m[1]))
        if m := _YEAR_FIRST.fullmatch(head):
            return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        pass  # no such day (31.02)
    raise _Bad("дата не распознана (ожидается ДД.ММ.ГГГГ, ГГГГ-ММ-ДД или ДД/ММ/ГГГГ)")


def parse_time(text: str) -> tuple[int, int]:
    m = _TIME.fullmatch(text.strip())
    if m:
        hour, minute, second = (int(m[1]), int(m[2]), int(m[3] or 0)) if m[1] else (int(m[4]), int(m[5]), 0)
        if hour < 24 and minute < 60 and second < 60:
            return hour, minute
    raise _Bad("время не распознано (ожидается ЧЧ:ММ)")


def parse_moment(text: str) -> datetime:
    """A date with a time: ``31.12.2026 09:30``, ``2026-12-31 09:30[:00]``, ``2026-12-31T09:30``."""
    text = text.strip().replace("T", " ")
    day = parse_date(text)
    rest = text.split(" ", 1)[1].strip() if " " in text else ""
    if not rest:
        raise _Bad("не указано время")
    hour, minute = parse_time(rest)
    return datetime(day.year, day.month, day.day, hour, minute)


def split_name(full: str) -> tuple[str, str, str]:
    """«Иванова Мария Петровна» -> its three parts (a fourth word joins the patronymic)."""
    words = full.split()
    if len(words) < 2:
        raise _Bad("нужны хотя бы фамилия и имя")
    return words[0], words[1], " ".join(words[2:])


def parse_phones(text: str) -> list[str]:
    """A cell may hold several numbers: ``8 916 123-45-67, +7 495 111-22-33``."""
    found: list[str] = []
    for part in re.split(r"[,;/\n]+", text):
        if not part.strip():
            continue
        if refused := phones.extension_refused(part):
            raise _Bad(refused)
        e164 = phones.normalize(part)
        if e164 is None:
            raise _Bad(f"невозможный номер телефона: {part.strip()[:30]}")
        if e164 not in found:
            found.append(e164)
    return found


def _text(value: str, limit: int) -> str:
    return " ".join(value.split())[:limit]


def _id(value: str) -> str:
    if len(value) > ID_MAX:
        raise _Bad(f"слишком длинный ID (больше {ID_MAX} символов)")
    return value


def _patient_field(name: str, value: str, today: date, out: dict[str, Any]) -> None:
    if name == "full_name":
        out["last_name"], out["first_name"], out["middle_name"] = (_text(p, NAME_MAX) for p in split_name(value))
    elif name in ("last_name", "first_name", "middle_name", "guardian_relation"):
        out[name] = _text(value, NAME_MAX)
    elif name == "birth_date":
        born = parse_date(value) if value else None
        if born and not (date(1900, 1, 1) <= born <= today):
            raise _Bad("дата рождения в будущем или раньше 1900 года")
        out[name] = born.isoformat() if born else None
    elif name == "sex":
        if value and value.lower().rstrip(".") not in _SEXES:
            raise _Bad("пол не распознан (М или Ж)")
        out[name] = _SEXES.get(value.lower().rstrip("."), "")
    elif name == "phone":
        out.setdefault("phones", [])
        out["phones"] += [p for p in parse_phones(value) if p not in out["phones"]]
    elif name == "email":
        if value and not _EMAIL.match(value):
            raise _Bad("неверный адрес e-mail")
        out[name] = value[:120]
    elif name == "notes":
        out[name] = value[:TEXT_MAX]
    elif name == "guardian_name":
        out[name] = _text(value, 100)
    elif name == "guardian_phone":
        numbers = parse_phones(value) if value else []
        out[name] = numbers[0] if numbers else None
    elif name == "guardian_external_id":
        out[name] = _id(value) or None


def _doctor_field(name: str, value: str, out: dict[str, Any]) -> None:
    if name == "full_name":
        if not value:
            raise _Bad("пустое ФИО")
        out[name] = _text(value, 100)
    elif name in ("specialty", "branch"):
        out[name] = _text(value, 100)


def _appointment_field(name: str, value: str, out: dict[str, Any]) -> None:
    if name in ("patient_external_id", "doctor_external_id"):
        if not value:
            raise _Bad("пустой ID")
        out[name] = _id(value)
    elif name == "starts_at":
        out["starts_at"] = parse_moment(value)
    elif name == "date":
        out["day"] = parse_date(value)
    elif name == "time":
        out["start_time"] = parse_time(value)
    elif name == "ends_at":
        out["end_time"] = parse_time(value.replace("T", " ").split(" ")[-1]) if value else None
    elif name == "minutes":
        minutes = int(float(value.replace(",", "."))) if value else DEFAULT_MINUTES
        if not 5 <= minutes <= 600:
            raise _Bad("длительность должна быть от 5 до 600 минут")
        out[name] = minutes
    elif name == "status":
        status = _STATUS_OF.get(" ".join(value.lower().replace("ё", "е").split()), None if value else "unconfirmed")
        if status is None:
            raise _Bad(f"неизвестный статус: {value[:30]}")
        out[name] = status
    elif name == "branch":
        out[name] = _text(value, 100)
    elif name == "comment":
        out[name] = value[:TEXT_MAX]
    elif name == "price":
        price = float(value.replace(" ", "").replace(",", ".")) if value else 0.0
        if not 0 <= price < 1e9:  # NaN and infinities fail this too
            raise _Bad("стоимость должна быть числом от 0")
        out[name] = price
    elif name == "created_at":
        out[name] = parse_moment(value) if value else None


def _finish_appointment(out: dict[str, Any]) -> None:
    """Start and end from whichever columns the file has."""
    if "starts_at" not in out:
        if "day" not in out or "start_time" not in out:
            raise _Bad("не указаны дата и время приёма")
        day, (h, m) = out.pop("day"), out.pop("start_time")
        out["starts_at"] = datetime(day.year, day.month, day.day, h, m)
    out.pop("day", None)
    out.pop("start_time", None)
    end_time = out.pop("end_time", None)
    if end_time is not None:
        start = out["starts_at"]
        end = start.replace(hour=end_time[0], minute=end_time[1])
        if end <= start:
            raise _Bad("время окончания раньше начала")
        out["minutes"] = int((end - start) / timedelta(minutes=1))
    out.setdefault("minutes", DEFAULT_MINUTES)


def parse_row(kind: str, mapping: list[str], cells: list[str], line: int, today: date) -> Row | list[Rejection]:
    """The row as stored, or every reason it is refused (nothing of a refused row is written)."""
    labels = {f.name: f.label for f in FIELDS[kind]}
    rejections: list[Rejection] = []
    out: dict[str, Any] = {}
    for index, name in enumerate(mapping):
        if not name:
            continue
        value = _cell(cells, index)
        try:
            if value.startswith("="):
                raise _Bad("формула в ячейке (сохраните файл со значениями)")
            if name == "external_id":
                if not value:
                    raise _Bad("пустой ID")
                out[name] = _id(value)
            elif kind == "patients":
                _patient_field(name, value, today, out)
            elif kind == "doctors":
                _doctor_field(name, value, out)
            else:
                _appointment_field(name, value, out)
        except (_Bad, ValueError) as exc:
            reason = str(exc) if isinstance(exc, _Bad) else f"неверное значение: {value[:30]}"
            rejections.append(Rejection(line, labels.get(name, name), reason))
    if rejections:
        return rejections
    try:
        if kind == "patients":
            if not out.get("last_name") or not out.get("first_name"):
                raise _Bad("нужны фамилия и имя")
            if out.get("guardian_external_id") == out["external_id"]:
                raise _Bad("пациент указан представителем самого себя")
            # mobile or landline, worked out here (in the import's parsing thread), not by the writer
            out["phone_kinds"] = {e164: phones.kind(e164) for e164 in out.get("phones", [])}
        elif kind == "appointments":
            _finish_appointment(out)
    except _Bad as exc:
        return [Rejection(line, "", str(exc))]
    return Row(line, out)


def parse_rows(kind: str, mapping: list[str], today: date,
               rows: list[tuple[int, list[str]]]) -> list[Row | list[Rejection]]:
    """A batch of (line, cells): what ``parse_row`` makes of each (a module-level function, so
    that a worker process can be handed it)."""
    return [parse_row(kind, mapping, cells, line, today) for line, cells in rows]


def guardian_cycle(guardian_of: dict[str, str], ward: str, guardian: str) -> bool:
    """Would making ``guardian`` the representative of ``ward`` close a loop (A represents B who
    represents A)? ``guardian_of`` maps a ward's MIS id to its representative's."""
    seen: set[str] = set()
    current: str | None = guardian
    while current is not None and current not in seen:
        if current == ward:
            return True
        seen.add(current)
        current = guardian_of.get(current)
    return False

"""«История обращений» (seed 004): how a record (an appointment, a waiting-list entry) is shown —
its state, and the hover's two columns. Plain values in, text out."""

from __future__ import annotations

from typing import NamedTuple

from crm.rules.appeals import DONE, FUTURE, VOID


def appointment_state(status: str) -> str:
    """An appointment's status as the report's state (its glyph: seed 004's calendar colours)."""
    return DONE if status == "completed" else VOID if status in ("cancelled", "no_show") else FUTURE


class Hover(NamedTuple):
    """Seed 004: «Всплывающая подсказка разделена на два столбца: «В момент обращения» и «Текущий
    статус»» — what the administrator added, and whether the visit took place, what it brought,
    whether and when the waiting-list entry was closed."""

    at_contact: str
    now: str


APPOINTMENT_NOW = {"unconfirmed": "Будущий приём, не подтверждён", "confirmed": "Будущий приём, подтверждён",
                   "completed": "Приём состоялся", "cancelled": "Приём отменён", "no_show": "Пациент не пришёл"}


def _money(amount: float) -> str:
    return f"{amount:,.0f}".replace(",", "\u00a0") + "\u00a0₽"


def appointment_hover(*, starts: str, doctor: str, created: str, status: str, price: float) -> Hover:
    """An appointment's two columns (times already in the clinic's wall time, «ДД.ММ.ГГГГ ЧЧ:ММ»)."""
    now = APPOINTMENT_NOW.get(status, status)
    if status == "completed" and price:
        now += f", {_money(price)}"
    return Hover(f"Приём {starts}, {doctor} (добавлен {created})", now)


def waiting_hover(*, wanted: str, created: str, closed: str | None, booked: bool) -> Hover:
    """A waiting-list entry's two columns: when it was closed, and whether by an appointment."""
    now = "Лист ожидания открыт" if closed is None else (
        f"Закрыт {closed}" + (", записан на приём" if booked else ", без приёма"))
    return Hover(f"Лист ожидания{': ' + wanted if wanted else ''} (добавлен {created})", now)

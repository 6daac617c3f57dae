"""«История обращений» (seed 004): an answered outgoing call to a patient typed by the CRM action
that followed it within 15 minutes («Пациент. Хочет записаться», «Лист ожидания», «Задача CRM»,
«Напоминание»), with the automatic comment the action implies. Plain values in."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from crm.rules.appeals import (
    CRM_TASK,
    OUTGOING,
    REMINDER,
    WAITING_LIST,
    WANTS_BOOKING,
    Action,
    Contact,
)
from crm.rules.windows import CRM_ACTION_LINK


def _actions_after(contact: Contact, actions: Iterable[Action]) -> list[Action]:
    """The CRM actions on the contact's patient from its start to CRM_ACTION_LINK after its end,
    when it is an answered outgoing call to a number of the patient's card."""
    if contact.kind != OUTGOING or contact.patient_id is None or contact.missed:
        return []
    return [a for a in actions if a.patient_id == contact.patient_id
            and contact.started <= a.at <= contact.ended + CRM_ACTION_LINK]


def _type_of(kinds: set[str]) -> str:
    if "booked" in kinds:
        return WANTS_BOOKING
    if "waiting_added" in kinds:
        return WAITING_LIST
    if kinds & {"task_done", "task_moved"}:
        return CRM_TASK
    if kinds & {"moved", "status"}:
        return REMINDER
    return ""


def action_type(contact: Contact, actions: Iterable[Action]) -> str:
    """Seed 004: an answered outgoing call to a number of the patient's card joins the CRM action
    done within 15 minutes of it (CRM_ACTION_LINK) and takes its type — a booking (from the
    waiting list too) «Хочет записаться», a waiting-list entry «Лист ожидания», a task closed or
    moved «Задача CRM», an appointment moved, cancelled or confirmed «Напоминание». "" when none."""
    return _type_of({a.kind for a in _actions_after(contact, actions)})


def _wall(text: str, form: str = "%d.%m.%Y %H:%M") -> str:
    """A stored wall time («2026-12-04T10:00») or day as the panel writes it («04.12.2026 10:00»)."""
    try:
        return datetime.fromisoformat(text.strip()).strftime(form)
    except ValueError:
        return text.strip()


_STATUS_SAID = {"confirmed": "Пациент оповещён: приём подтверждён", "cancelled": "Приём отменён",
                "completed": "Пациент пришёл", "no_show": "Пациент не пришёл",
                "unconfirmed": "Приём снова не подтверждён"}


def action_comment(action: Action) -> str:
    """Seed 004's «автокомментарии по листу ожидания, задаче или оповещению о приеме»: what the
    CRM action says of the call it typed. "" for a booking (the record itself says it)."""
    before, _, after = action.detail.partition("->")
    if action.kind == "waiting_added":
        return "Лист ожидания" + (f": {action.detail}" if action.detail else "")
    if action.kind == "task_done":
        return f"Задача выполнена: {action.detail}"
    if action.kind == "task_moved":
        title, _, dates = action.detail.rpartition(": ")
        old, _, new = dates.partition("->")
        return f"Задача перенесена: {title or dates}, {_wall(old, '%d.%m.%Y')} → {_wall(new, '%d.%m.%Y')}" if new else f"Задача перенесена: {action.detail}"
    if action.kind == "moved":
        return f"Приём перенесён: {_wall(before)} → {_wall(after)}"
    if action.kind == "status" and after.split():
        return _STATUS_SAID.get(after.split()[0], "")
    return ""


def typed_by_action(contact: Contact, actions: Iterable[Action]) -> Contact:
    """The contact with the type (action_type) and the automatic comments of the actions that
    followed it; a type or a comment the administrator gave is kept."""
    after = _actions_after(contact, actions)
    if not after:
        return contact
    kind = contact.caller_type or action_type(contact, after)
    comment = contact.comment or "; ".join(dict.fromkeys(t for a in after if (t := action_comment(a))))
    if (kind, comment) == (contact.caller_type, contact.comment):
        return contact
    return dataclasses.replace(contact, caller_type=kind, comment=comment)

"""«История обращений» (seed 004), the pure part: contacts of every kind joined into обращения
(all contacts of one client in one clinic day), the records (appointments, waiting-list entries)
each обращение brought, its main result and its success, and totals. Plain values in; the
storage (``crm.appeals``) fetches the rows. The same facts give the same report whatever order
they come in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from crm.rules import ad_channels as ac
from crm.rules.windows import APPOINTMENT_LINK, CANCEL_LINK

# contact kinds
INCOMING, OUTGOING, REQUEST, DIALOG = "incoming", "outgoing", "request", "dialog"
COMMENT = "comment"  # a comment entered by hand that joined no call (deletable)
MESSAGE = "message"  # a patient's reply to a message (WhatsApp / SMS)
REQUEST_DIALOG = "request_dialog"  # a request typed in by an administrator: still needs a call
KIND_NAMES = {INCOMING: "Входящий", OUTGOING: "Исходящий", REQUEST: "Заявка", REQUEST_DIALOG: "Заявка-диалог",
              DIALOG: "Диалог", COMMENT: "Комментарий", MESSAGE: "Сообщение пациента"}

# success of an обращение
NOT_BOOKED = "Не записался"
BOOKED = "Записался"
WAITING = "Записался в лист ожидания"
CANCELLED = "Отменил"
CAME = "Записался и пришел"
OPEN_REQUESTS = "Заявки (Актуальные)"
SUCCESSES = (NOT_BOOKED, BOOKED, WAITING, CANCELLED, CAME, OPEN_REQUESTS)

# a record's state, and how successful it is (seed 004: the main result's order)
FUTURE, DONE, VOID = "future", "done", "void"  # appointment: to come | completed | cancelled, no-show
WAIT_OPEN, WAIT_BOOKED, WAIT_CLOSED = "wait_open", "wait_booked", "wait_closed"
_RANK = {DONE: 3, WAIT_BOOKED: 3, FUTURE: 2, WAIT_OPEN: 2, VOID: 1, WAIT_CLOSED: 1}


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    kind: str  # INCOMING | OUTGOING | REQUEST | REQUEST_DIALOG | DIALOG | COMMENT | MESSAGE
    started: float
    ended: float
    phone: str = ""
    patient_id: int | None = None
    guardian_id: int | None = None
    missed: bool = False  # a missed call; for a request: still open
    overdue: bool = False  # a request open for 7 full days
    employee: str = ""
    topic: str = ""
    caller_type: str = ""
    channel: str = ""  # advertising channel (what the rules found, else the number's or source's label)
    channel_group: str = ""
    channel_rule: str = ""  # which rule found it
    did: str = ""  # the clinic number called
    service: str = ""  # the service it came from (a request's source, a number's label)
    utm: tuple[tuple[str, str], ...] = ()
    comment: str = ""
    call_id: int | None = None
    recording: bool = False
    wait: float = 0.0
    duration: float = 0.0


def facts_of(c: Contact) -> ac.Facts:
    return ac.Facts(is_request=c.kind in (REQUEST, REQUEST_DIALOG), utm=c.utm, caller=c.phone, did=c.did,
                    service=c.service)


def with_channel(c: Contact, rules: list[ac.Rule], **more: Any) -> Contact:
    """The channel the rules find (and which rule), else the number's or the source's label;
    ``more`` fields set in the same copy (one copy a contact: a month holds tens of thousands)."""
    rule = ac.channel_for(facts_of(c), rules) if rules else None
    if rule is None:  # the rule's text is empty then: the page says no rule fired
        changed = {k: v for k, v in more.items() if getattr(c, k) != v}
        return dataclasses.replace(c, **changed) if changed else c
    return dataclasses.replace(c, channel=rule.channel, channel_group=rule.group,
                               channel_rule=f"{ac.KIND_NAMES[rule.kind]}: {rule.value}", **more)


@dataclass(frozen=True, slots=True)
class Record:
    """An appointment or a waiting-list entry, as the report sees it."""

    id: int
    kind: str  # appointment | waiting
    patient_id: int
    created: float
    state: str  # FUTURE | DONE | VOID | WAIT_OPEN | WAIT_BOOKED | WAIT_CLOSED
    price: float = 0.0


@dataclass(frozen=True, slots=True)
class Action:
    """Something done in the CRM (``crm_actions``): booked, moved, status, task_done."""

    at: float
    kind: str
    patient_id: int
    appointment_id: int | None = None
    detail: str = ""


WANTS_BOOKING = "Пациент. Хочет записаться"
WAITING_LIST = "Пациент. Лист ожидания"
CRM_TASK = "Пациент. Задача CRM"
REMINDER = "Пациент. Напоминание"


PATIENT_TALK = "Разговор с пациентом"  # the «Кто, тип» choice for the automatic outgoing types


def who_matches(caller_type: str, chosen: Collection[str]) -> bool:
    """The «Кто, тип» filter: the types ticked; «Разговор с пациентом» stands for the talks the
    CRM typed by the action that followed (waiting list, task, reminder), as seed 004 uses it."""
    return caller_type in chosen or (PATIENT_TALK in chosen and caller_type in (WAITING_LIST, CRM_TASK, REMINDER))


def cancel_or_move(action: Action) -> bool:
    """Seed 001/004: «Информация об отмене или переносе приема подтянется…»: a move, or a status
    change to «Отменён» (its log reads ``old -> cancelled`` or ``-> cancelled (via)``). A
    confirmation, «пришёл», «не пришёл» are not: they would inflate the contact's success."""
    if action.kind == "moved":
        return True
    if action.kind != "status" or "->" not in action.detail:
        return False
    after = action.detail.split("->", 1)[1].split()
    return bool(after) and after[0] == "cancelled"


def changed_during(contact: Contact, action: Action) -> bool:
    """A cancel or a move joins the contact it followed within 15 minutes (CANCEL_LINK)."""
    return cancel_or_move(action) and contact.started <= action.at <= contact.ended + CANCEL_LINK


@dataclass(slots=True)
class Appeal:
    """One client's contacts of one clinic day."""

    day: date
    contacts: list[Contact] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    main: Record | None = None
    success: str = NOT_BOOKED

    @property
    def first(self) -> Contact:
        return self.contacts[0]

    @property
    def patient_id(self) -> int | None:
        return next((c.patient_id for c in self.contacts if c.patient_id is not None), None)


def client_keys(c: Contact) -> list[str]:
    """What ties contacts to one client: the patient, a guardian, the number."""
    keys = []
    if c.patient_id is not None:
        keys.append(f"p:{c.patient_id}")
    if c.guardian_id is not None:
        keys.append(f"g:{c.guardian_id}")
    if c.phone:
        keys.append(f"n:{c.phone}")
    return keys or [f"c:{c.id}"]


def _find(parent: dict[str, str], k: str) -> str:
    """Union-find's root of ``k`` (with path halving)."""
    while parent.setdefault(k, k) != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


def group(contacts: Iterable[Contact], tz: ZoneInfo) -> list[Appeal]:
    """«По обращениям»: contacts of one client within one clinic day are one обращение — any of
    the client's numbers, a guardian's, a request and the call back. Sorted by first contact."""
    by_day: dict[date, list[Contact]] = {}
    for c in sorted(contacts, key=lambda c: (c.started, c.id)):
        by_day.setdefault(datetime.fromtimestamp(c.started, tz).date(), []).append(c)
    appeals: list[Appeal] = []
    for day, items in by_day.items():
        parent: dict[str, str] = {}
        keyed = [(c, client_keys(c)) for c in items]
        for _, keys in keyed:
            for k in keys[1:]:
                parent[_find(parent, k)] = _find(parent, keys[0])
        groups: dict[str, Appeal] = {}
        for c, keys in keyed:
            groups.setdefault(_find(parent, keys[0]), Appeal(day)).contacts.append(c)
        appeals += groups.values()
    return sorted(appeals, key=lambda a: (a.first.started, a.first.id))


def linked(contact: Contact, record: Record) -> bool:
    """Seed 004 / 000: a record joins a contact if made from 30 min before it started to 30 min
    after it ended."""
    return contact.started - APPOINTMENT_LINK <= record.created <= contact.ended + APPOINTMENT_LINK


def main_result(records: list[Record], patient_id: int | None) -> Record | None:
    """Of the records of the patient named in the contact, the most successful (completed, or
    a waiting list closed by an appointment > to come or open > cancelled or closed without
    one); a tie goes to the one added earlier."""
    mine = [r for r in records if patient_id is None or r.patient_id == patient_id]
    if not mine:
        return None
    return min(mine, key=lambda r: (-_RANK[r.state], r.created, r.id))


def success_of(main: Record | None, open_requests: bool) -> str:
    if main is None:
        return OPEN_REQUESTS if open_requests else NOT_BOOKED
    if main.state == DONE:
        return CAME
    if main.state in (FUTURE, WAIT_BOOKED):
        return BOOKED
    if main.state == WAIT_OPEN:
        return WAITING
    if main.state == WAIT_CLOSED:
        return NOT_BOOKED
    return CANCELLED


def judge(appeals: list[Appeal], records: Iterable[Record], actions: Iterable[Action] = ()) -> list[Appeal]:
    """Attach to each обращение the records of its patients made within the window of any of
    its contacts, and the appointments cancelled or moved within 15 minutes of one; pick the
    main result and the success."""
    by_patient: dict[int, list[Record]] = {}
    appointments: dict[int, Record] = {}
    for r in records:
        by_patient.setdefault(r.patient_id, []).append(r)
        if r.kind == "appointment":
            appointments[r.id] = r
    acts = list(actions)
    for a in appeals:
        patients = {c.patient_id for c in a.contacts if c.patient_id is not None}
        mine = [r for p in patients for r in by_patient.get(p, []) if any(linked(c, r) for c in a.contacts)]
        changed = {x.appointment_id for x in acts if x.patient_id in patients and x.appointment_id in appointments
                   and any(changed_during(c, x) for c in a.contacts)}
        mine += [appointments[i] for i in sorted(changed) if appointments[i] not in mine]  # type: ignore[index]
        a.records = sorted(mine, key=lambda r: (r.created, r.id))
        a.main = main_result(a.records, a.patient_id)
        a.success = success_of(a.main, any(c.kind in (REQUEST, REQUEST_DIALOG) and c.missed for c in a.contacts))
    return appeals


class Facet(NamedTuple):
    """What the counts, totals, costs, the chart and the filters applied after grouping need of
    one обращение; computed once with it (and stored with a day's обращения). A plain tuple: a
    year's page holds a million of them."""

    day: date
    success: str
    employee: str  # of its contacts, the first that names one ("" when none)
    topic: str
    channel: str
    who: str  # «Кто, тип»
    employees: str  # every employee of its contacts, one a line (the employee filter: ``has_employee``)
    contacts: int

    def has_employee(self, name: str) -> bool:
        return name in self.employees.split(EMPLOYEE_SEP)


EMPLOYEE_SEP = "\n"  # names are one line each


def facet_of(a: Appeal) -> Facet:
    def first(values: list[str]) -> str:
        return next((v for v in values if v), "")

    employees = [c.employee for c in a.contacts]
    return Facet(a.day, a.success, first(employees), first([c.topic for c in a.contacts]),
                 first([c.channel for c in a.contacts]), first([c.caller_type for c in a.contacts]),
                 EMPLOYEE_SEP.join(dict.fromkeys(e for e in employees if e)), len(a.contacts))


@dataclass(frozen=True)
class Total:
    key: str
    count: int
    share: float  # percent of all
    booked: int  # обращения that ended in a booking (Записался, пришел, лист ожидания)
    children: tuple[Total, ...] = ()


BOOKED_SUCCESSES = (BOOKED, CAME, WAITING)


class Group(NamedTuple):
    """Обращения alike in everything a page counts them by, and how many (the weight of counts,
    totals, costs and the chart): a year is thousands of groups, not a million rows."""

    day: date
    success: str
    employee: str
    topic: str
    channel: str
    who: str
    n: int
    contacts: int


def group_facets(facets: Iterable[Facet]) -> list[Group]:
    counts: dict[tuple[date, str, str, str, str, str], list[int]] = {}
    for f in facets:
        c = counts.setdefault((f.day, f.success, f.employee, f.topic, f.channel, f.who), [0, 0])
        c[0] += 1
        c[1] += f.contacts
    return [Group(*key, n, contacts) for key, (n, contacts) in counts.items()]


def totals(groups: list[Group], levels: list[Callable[[Group], str]]) -> list[Total]:
    """Counts and shares per value of the first level, each split by the next (two at most)."""
    whole = sum(g.n for g in groups) or 1

    def level(items: list[Group], fns: list[Callable[[Group], str]]) -> tuple[Total, ...]:
        if not fns:
            return ()
        parts: dict[str, list[Group]] = {}
        for g in items:
            parts.setdefault(fns[0](g), []).append(g)
        counted = {k: sum(g.n for g in v) for k, v in parts.items()}
        return tuple(Total(k, counted[k], 100.0 * counted[k] / whole,
                           sum(g.n for g in v if g.success in BOOKED_SUCCESSES), level(v, fns[1:]))
                     for k, v in sorted(parts.items(), key=lambda kv: (-counted[kv[0]], kv[0])))

    return list(level(groups, levels[:2]))

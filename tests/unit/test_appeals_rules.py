"""«История обращений», the pure rules (seed 004) on plain rows: grouping one client's contacts of
one clinic day (several numbers, a guardian, a request and the call back), the 30-minute link at
its edges, the main result's order and ties, success, totals, and order independence."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

from crm.rules import appeal_actions
from crm.rules import appeals as ap

TZ = ZoneInfo("Europe/Moscow")


def at(h: int, m: int = 0, s: int = 0, day: int = 2) -> float:
    return datetime(2026, 12, day, h, m, s, tzinfo=TZ).timestamp()


def call(i: int, start: float, *, kind: str = ap.INCOMING, minutes: float = 2, **kw) -> ap.Contact:
    return ap.Contact(id=f"call:{i}", kind=kind, started=start, ended=start + minutes * 60, **kw)


def test_one_client_one_day_is_one_appeal() -> None:
    contacts = [
        call(1, at(9), phone="+79160000001", patient_id=7, missed=True),  # missed from her mobile
        call(2, at(10), phone="+74950000002", patient_id=7),  # then from her work number
        ap.Contact(id="request:1", kind=ap.REQUEST, started=at(11), ended=at(11), phone="+79160000001"),
        call(3, at(12), kind=ap.OUTGOING, phone="+79160000001"),  # the call back (number only)
        call(4, at(9, 30), phone="+79265554433", guardian_id=3),  # a guardian, not yet a patient
        call(5, at(13), phone="+79265550000", guardian_id=3),  # the same guardian, another number
        call(6, at(8), phone="+79031110000"),  # someone else
        call(7, at(9, day=3), phone="+79160000001", patient_id=7),  # the next day: a new appeal
    ]
    appeals = ap.group(contacts, TZ)
    assert [[c.id for c in a.contacts] for a in appeals] == [
        ["call:6"], ["call:1", "call:2", "request:1", "call:3"], ["call:4", "call:5"], ["call:7"]]
    assert appeals[1].patient_id == 7 and appeals[1].day == date(2026, 12, 2)


def test_the_clinic_day_is_the_clinics() -> None:
    late = call(1, at(23, 59), phone="+79160000001")
    after_midnight = call(2, at(0, 1, day=3), phone="+79160000001")  # 21:01 UTC: the next clinic day
    assert [len(a.contacts) for a in ap.group([late, after_midnight], TZ)] == [1, 1]


def test_the_thirty_minute_link_at_its_edges() -> None:
    c = call(1, at(10), minutes=5, patient_id=7)
    def rec(created: float) -> ap.Record:
        return ap.Record(1, "appointment", 7, created, ap.FUTURE)

    assert ap.linked(c, rec(at(9, 30)))  # 30 min before the start
    assert not ap.linked(c, rec(at(9, 29, 59)))
    assert ap.linked(c, rec(at(10, 35)))  # 30 min after the end (10:05)
    assert not ap.linked(c, rec(at(10, 35, 1)))
    assert ap.linked(c, rec(at(10, 34)))  # 29 min after: in
    assert not ap.linked(c, rec(at(10, 36)))  # 31 min after: out


def test_the_main_result_and_ties() -> None:
    future = ap.Record(1, "appointment", 7, at(10), ap.FUTURE)
    done = ap.Record(2, "appointment", 7, at(10, 5), ap.DONE)
    void = ap.Record(3, "appointment", 7, at(9), ap.VOID)
    wait_open = ap.Record(4, "waiting", 7, at(9, 59), ap.WAIT_OPEN)
    other_patient = ap.Record(5, "appointment", 8, at(9), ap.DONE)
    assert ap.main_result([future, done, void, other_patient], 7) == done  # completed first
    assert ap.main_result([future, wait_open, void], 7) == wait_open  # same rank: the earlier
    assert ap.main_result([void, other_patient], 7) == void  # only the named patient's
    assert ap.main_result([], 7) is None
    closed_booked = ap.Record(6, "waiting", 7, at(8), ap.WAIT_BOOKED)
    assert ap.main_result([done, closed_booked], 7) == closed_booked  # same rank, earlier


def test_success_of_each_kind() -> None:
    r = lambda state: ap.Record(1, "appointment", 7, at(10), state)  # noqa: E731
    assert ap.success_of(None, False) == ap.NOT_BOOKED
    assert ap.success_of(None, True) == ap.OPEN_REQUESTS
    assert ap.success_of(r(ap.DONE), False) == ap.CAME
    assert ap.success_of(r(ap.FUTURE), False) == ap.BOOKED
    assert ap.success_of(r(ap.WAIT_BOOKED), False) == ap.BOOKED
    assert ap.success_of(r(ap.WAIT_OPEN), False) == ap.WAITING
    assert ap.success_of(r(ap.VOID), False) == ap.CANCELLED
    assert ap.success_of(r(ap.WAIT_CLOSED), True) == ap.NOT_BOOKED


def test_judge_links_records_through_any_contact_and_totals() -> None:
    contacts = [call(1, at(9), phone="+79160000001", patient_id=7, employee="Анна", missed=True),
                call(2, at(14), phone="+79160000001", patient_id=7, employee="Ольга"),
                call(3, at(10), phone="+79030000003", patient_id=8, employee="Анна"),
                ap.Contact(id="request:1", kind=ap.REQUEST, started=at(11), ended=at(11), phone="+79035550000",
                           missed=True)]
    records = [ap.Record(1, "appointment", 7, at(14, 20), ap.FUTURE),  # 20 min after the second call
               ap.Record(2, "appointment", 8, at(12), ap.DONE)]  # 1 h 58 min after: not linked
    appeals = ap.judge(ap.group(contacts, TZ), records)
    by_first = {a.first.id: a for a in appeals}
    assert by_first["call:1"].success == ap.BOOKED and by_first["call:1"].records == [records[0]]
    assert by_first["call:3"].success == ap.NOT_BOOKED and by_first["call:3"].records == []
    assert by_first["request:1"].success == ap.OPEN_REQUESTS
    facets = [ap.facet_of(a) for a in appeals]
    assert facets[0].has_employee("Ольга") and not facets[0].has_employee("Оль") and facets[0].contacts == 2 and facets[0].employee == "Анна"
    totals = ap.totals(ap.group_facets(facets), [lambda g: g.success, lambda g: g.employee or "—"])
    # the biggest first, then by name
    assert [(t.key, t.count, round(t.share, 1), t.booked) for t in totals] == [
        (ap.BOOKED, 1, 33.3, 1), (ap.OPEN_REQUESTS, 1, 33.3, 0), (ap.NOT_BOOKED, 1, 33.3, 0)]
    booked = next(t for t in totals if t.key == ap.BOOKED)
    assert [(c.key, c.count) for c in booked.children] == [("Анна", 1)]


def test_the_same_facts_give_the_same_report_in_any_order() -> None:
    rng = random.Random(4)
    contacts = [call(i, at(8 + i % 10, i % 60), phone=f"+7916000000{i % 4}", patient_id=(i % 4) or None,
                     guardian_id=3 if i % 7 == 0 else None) for i in range(40)]
    records = [ap.Record(i, "appointment", 1 + i % 3, at(9 + i % 9, 10), (ap.FUTURE, ap.DONE, ap.VOID)[i % 3])
               for i in range(12)]

    def report(cs: list[ap.Contact], rs: list[ap.Record]) -> list[tuple]:
        return [(tuple(c.id for c in a.contacts), a.success, a.main and a.main.id) for a in ap.judge(ap.group(cs, TZ), rs)]

    expected = report(contacts, records)
    for _ in range(20):
        cs, rs = contacts[:], records[:]
        rng.shuffle(cs)
        rng.shuffle(rs)
        assert report(cs, rs) == expected


# --- advertising channels: the rule by priority -------------------------------------------------
def test_channel_rules_by_priority() -> None:
    from crm.rules import ad_channels as ac

    rules = [ac.Rule(1, ac.SERVICE, "НаПоправку", "НаПоправку", "Агрегаторы"),
             ac.Rule(2, ac.DID, "74951110002", "ПроДокторов", "Агрегаторы"),
             ac.Rule(3, ac.CALLER, "+7916*", "Мобильные МТС", "Прочие"),
             ac.Rule(4, ac.UTM, "utm_source=yandex", "Яндекс Директ", "Контекстная реклама"),
             ac.Rule(5, ac.CALLER, "+79161234567", "Постоянный пациент", "Прочие", position=-1)]
    call = ac.Facts(caller="+79161234567", did="74951110002")
    assert ac.channel_for(call, rules).id == 5  # the caller's rules before the clinic number's; by order
    assert ac.channel_for(ac.Facts(caller="+79031112233", did="74951110002"), rules).id == 2
    assert ac.channel_for(ac.Facts(caller="+79031112233", did="74951110001"), rules) is None
    request = ac.Facts(is_request=True, utm=(("utm_source", "Yandex"),), caller="+79161234567", service="НаПоправку")
    assert ac.channel_for(request, rules).id == 4  # UTM first (case-insensitive)
    no_utm = ac.Facts(is_request=True, caller="+79161234567", did="74951110002", service="напоправку")
    assert ac.channel_for(no_utm, rules).id == 1  # a request: never by numbers
    explained = ac.explain(call, rules)
    assert [(k, r.id if r else None, fired) for k, r, fired in explained] == [
        (ac.UTM, None, False), (ac.CALLER, 5, True), (ac.DID, 2, False), (ac.SERVICE, None, False)]


# --- CRM actions: an outgoing call's type, a cancel joining the contact -------------------------
def test_an_outgoing_call_takes_the_type_of_the_action_within_fifteen_minutes() -> None:
    out = call(1, at(10), kind=ap.OUTGOING, minutes=3, patient_id=7)  # 10:00-10:03
    def act(kind: str, h: int, m: int, s: int = 0, patient: int = 7) -> ap.Action:
        return ap.Action(at(h, m, s), kind, patient, appointment_id=1)

    assert appeal_actions.action_type(out, [act("task_done", 10, 17)]) == ap.CRM_TASK  # 14 min after the end
    assert appeal_actions.action_type(out, [act("task_done", 10, 18)]) == ap.CRM_TASK  # 15 min: still in
    assert appeal_actions.action_type(out, [act("task_done", 10, 18, 1)]) == ""  # past 15 min
    assert appeal_actions.action_type(out, [act("task_done", 10, 19)]) == ""  # 16 min after: out
    assert appeal_actions.action_type(out, [act("moved", 10, 5), act("booked", 10, 6)]) == ap.WANTS_BOOKING  # booking wins
    assert appeal_actions.action_type(out, [act("status", 10, 5)]) == ap.REMINDER
    assert appeal_actions.action_type(out, [act("waiting_added", 10, 5), act("task_done", 10, 6)]) == ap.WAITING_LIST
    assert appeal_actions.action_type(out, [act("waiting_added", 10, 5), act("booked", 10, 7)]) == ap.WANTS_BOOKING
    assert appeal_actions.action_type(out, [act("task_done", 10, 5, patient=8)]) == ""  # another patient's
    incoming = call(2, at(10), patient_id=7)
    assert appeal_actions.action_type(incoming, [act("task_done", 10, 5)]) == ""  # outgoing calls only
    unanswered = call(3, at(10), kind=ap.OUTGOING, patient_id=7, missed=True)
    assert appeal_actions.action_type(unanswered, [act("task_done", 10, 5)]) == ""


def test_the_action_after_an_outgoing_call_gives_it_an_automatic_comment() -> None:
    """#32, seed 004: «сотрудник клиники звонит пациенту… и в течение 15 минут от звонка совершает
    действие: записывает на прием, переносит или закрывает задачу, переносит или отменяет прием,
    отмечает, что пациент оповещен»; «…звонки без записи на прием, с автокомментариями по листу
    ожидания, задаче или оповещению о приеме»."""
    out = call(1, at(10), kind=ap.OUTGOING, minutes=3, patient_id=7)

    def act(kind: str, m: int, detail: str) -> ap.Action:
        return ap.Action(at(10, m), kind, 7, appointment_id=1, detail=detail)

    moved_task = act("task_moved", 5, "Позвонить после КТ: 2026-12-02 -> 2026-12-09")
    typed = appeal_actions.typed_by_action(out, [moved_task])
    assert typed.caller_type == ap.CRM_TASK  # a moved task types the call as a closed one does
    assert typed.comment == "Задача перенесена: Позвонить после КТ, 02.12.2026 → 09.12.2026"
    done = appeal_actions.typed_by_action(out, [act("task_done", 4, "Напомнить про снимок")])
    assert (done.caller_type, done.comment) == (ap.CRM_TASK, "Задача выполнена: Напомнить про снимок")
    told = appeal_actions.typed_by_action(out, [act("status", 4, "unconfirmed -> confirmed")])
    assert (told.caller_type, told.comment) == (ap.REMINDER, "Пациент оповещён: приём подтверждён")
    moved = appeal_actions.typed_by_action(out, [act("moved", 4, "2026-12-04T10:00 -> 2026-12-05T11:30")])
    assert (moved.caller_type, moved.comment) == (ap.REMINDER, "Приём перенесён: 04.12.2026 10:00 → 05.12.2026 11:30")
    waiting = appeal_actions.typed_by_action(out, [act("waiting_added", 4, "Ортодонт")])
    assert (waiting.caller_type, waiting.comment) == (ap.WAITING_LIST, "Лист ожидания: Ортодонт")
    both = appeal_actions.typed_by_action(out, [act("waiting_added", 4, "Ортодонт"), act("booked", 6, "2026-12-09T10:00")])
    assert (both.caller_type, both.comment) == (ap.WANTS_BOOKING, "Лист ожидания: Ортодонт")  # the booking is the record
    # what the administrator typed is kept; an incoming call or an action 16 minutes after gets nothing
    own = dataclasses.replace(out, caller_type=ap.WANTS_BOOKING, comment="Сама перезвонит")
    assert appeal_actions.typed_by_action(own, [act("task_done", 4, "x")]) == own
    assert appeal_actions.typed_by_action(call(2, at(10), patient_id=7), [act("task_done", 4, "x")]).comment == ""
    assert appeal_actions.typed_by_action(out, [ap.Action(at(10, 19), "task_done", 7, detail="x")]) == out


def test_a_cancel_within_fifteen_minutes_joins_the_contact() -> None:
    c = call(1, at(10), patient_id=7)  # 10:00-10:02
    old = ap.Record(41, "appointment", 7, at(9, day=1), ap.VOID)  # made yesterday, cancelled now
    cancel_in = ap.Action(at(10, 16), "status", 7, appointment_id=41, detail="confirmed -> cancelled")  # 14 min after
    cancel_out = ap.Action(at(10, 18), "status", 7, appointment_id=41, detail="confirmed -> cancelled")  # 16 min
    assert ap.changed_during(c, cancel_in) and not ap.changed_during(c, cancel_out)
    joined = ap.judge(ap.group([c], TZ), [old], [cancel_in])[0]
    assert joined.records == [old] and joined.success == ap.CANCELLED
    alone = ap.judge(ap.group([c], TZ), [old], [cancel_out])[0]
    assert alone.records == [] and alone.success == ap.NOT_BOOKED


def test_only_a_cancel_or_a_move_joins_the_contact_it_followed() -> None:
    """#32, seed 001/004: «Информация об отмене или переносе приема подтянется, если отмену или
    перенос совершили в течение 15 минут от разговора.» Only those: a confirmation (the patient's
    «1», the robot's result), «пришёл» or «не пришёл» within the 15 minutes is not the contact's
    result (a call followed by a confirmation is not «Записался»)."""
    c = call(1, at(10), patient_id=7)  # 10:00-10:02
    old = ap.Record(41, "appointment", 7, at(9, day=1), ap.FUTURE)
    for detail, joins in (("unconfirmed -> cancelled", True), ("-> cancelled (робот)", True),
                          ("unconfirmed -> confirmed", False), ("-> confirmed (WhatsApp)", False),
                          ("confirmed -> completed", False), ("confirmed -> no_show", False), ("", False)):
        action = ap.Action(at(10, 5), "status", 7, appointment_id=41, detail=detail)
        assert ap.changed_during(c, action) is joins, detail
        appeal = ap.judge(ap.group([c], TZ), [old], [action])[0]
        assert (appeal.records == [old]) is joins, detail
        if not joins:
            assert appeal.success == ap.NOT_BOOKED, detail
    assert ap.changed_during(c, ap.Action(at(10, 5), "moved", 7, appointment_id=41, detail="10.12 10:00"))


def test_a_month_s_spend_is_shared_by_its_days() -> None:
    from datetime import date

    from crm.rules.ad_channels import costs, period_spend

    monthly = {("Яндекс", "2026-11"): 3000.0, ("Яндекс", "2026-12"): 3100.0, ("Сайт", "2026-11"): 600.0}
    assert period_spend(monthly, date(2026, 11, 1), date(2026, 11, 30)) == {"Яндекс": 3000.0, "Сайт": 600.0}
    week = period_spend(monthly, date(2026, 11, 28), date(2026, 12, 4))  # 3 days of November, 4 of December
    assert round(week["Яндекс"], 2) == round(3 * 100 + 4 * 100, 2) and round(week["Сайт"], 2) == 60.0
    rows = costs([("Яндекс", True, True), ("Яндекс", False, False), ("Сайт", True, False)],
                 {"Яндекс": 700.0, "Реклама в метро": 500.0})
    by = {r.channel: r for r in rows}
    assert (by["Яндекс"].appeals, by["Яндекс"].booked, by["Яндекс"].came) == (2, 1, 1)
    assert by["Яндекс"].per(2) == 350.0 and by["Яндекс"].per(1) == 700.0
    assert by["Реклама в метро"].appeals == 0 and by["Реклама в метро"].per(0) is None  # money for nothing shows
    assert by["Сайт"].spend == 0

"""The website callback robot's pure parts (seed 003): the call flow fed facts with a set clock,
and the retry policy, opening hours, the >10 s rule, request status and line sharing."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from crm.rules import callback as cr
from pbx.robots import flow as f
from pbx.robots.callback import CallbackFlow

TZ = ZoneInfo("Europe/Moscow")


def flow(*phones: str) -> CallbackFlow:
    return CallbackFlow(base="cb-7-1", desk_phones=phones or ("101",), patient="79031112233",
                        prompt="sound:p", details=("sound:d1", "sound:d2", "sound:conn"), closed="sound:bye",
                        line="74951110001", key_wait_seconds=8, prompt_repeats=2)


def of(cmds: list[f.Command], kind: type) -> list:
    return [c for c in cmds if isinstance(c, kind)]


def outcome(cmds: list[f.Command]) -> f.Outcome | None:
    found = of(cmds, f.Outcome)
    return found[0] if found else None


def to_dialling(fl: CallbackFlow, at: float = 100.0) -> list[f.Command]:
    """Admin 101 answers, presses 1, hears the details; the flow sends the channel on."""
    fl.start()
    ch = fl.channel("101")
    cmds = fl.feed(f.Answered(ch, at))
    play = of(cmds, f.Play)[0]
    assert play.media == "sound:p" and play.channel == ch
    cmds = fl.feed(f.Key(ch, "1", at + 3))
    assert of(cmds, f.StopPlayback) and f.Report("key") in cmds
    for media in ("sound:d2", "sound:conn"):
        pb = fl._playback
        cmds = fl.feed(f.PromptDone(ch, pb, at + 4))
        assert of(cmds, f.Play)[0].media == media
    return fl.feed(f.PromptDone(ch, fl._playback, at + 8))


def test_start_rings_every_desk_phone_with_the_clinic_line() -> None:
    fl = flow("101", "102")
    cmds = fl.start()
    origs = of(cmds, f.Originate)
    assert [o.endpoint for o in origs] == ["PJSIP/101", "PJSIP/102"]
    assert all(("CLINIC_LINE", "74951110001") in o.variables for o in origs)


def test_first_admin_to_answer_takes_it_the_other_stops_ringing() -> None:
    fl = flow("101", "102")
    fl.start()
    cmds = fl.feed(f.Answered("cb-7-1-102", 10))
    assert f.Hangup("cb-7-1-101") in cmds and f.Report("answered:102") in cmds
    assert fl.feed(f.Answered("cb-7-1-101", 10.1)) == [f.Hangup("cb-7-1-101")]  # a late answer
    assert fl.feed(f.HungUp("cb-7-1-101", 16, 10.2)) == []  # the one stopped is not the end


def test_key_then_details_then_the_patient_through_the_dialplan() -> None:
    fl = flow()
    cmds = to_dialling(fl)
    cont = of(cmds, f.Continue)[0]
    assert (cont.channel, cont.context, cont.extension) == ("cb-7-1-101", "clinic-outgoing", "79031112233")
    assert ("CLINIC_RING", "30") in cont.variables and f.Report("dialling") in cmds
    assert fl.feed(f.HungUp("cb-7-1-101", 0, 109, final=False)) == []  # StasisEnd after continue
    assert fl.feed(f.Dialled("cb-7-1-101", "ANSWER", 110)) == [f.Report("bridged")]


@pytest.mark.parametrize(("talk", "expected"), [(9.0, cr.PATIENT_SHORT), (10.0, cr.PATIENT_SHORT),
                                                (10.01, cr.CONTACTED), (11.0, cr.CONTACTED)])
def test_more_than_ten_seconds_bridged_is_contact(talk: float, expected: str) -> None:
    fl = flow()
    to_dialling(fl)
    fl.feed(f.Dialled("cb-7-1-101", "ANSWER", 110))
    out = outcome(fl.feed(f.HungUp("cb-7-1-101", 16, 110 + talk)))
    assert out is not None and out.outcome == expected and out.talk == pytest.approx(talk)
    assert out.answered_at == 110 and out.keys == "1"


@pytest.mark.parametrize(("status", "expected"), [("BUSY", cr.PATIENT_BUSY), ("NOANSWER", cr.PATIENT_NO_ANSWER),
                                                  ("CHANUNAVAIL", cr.PATIENT_FAILED),
                                                  ("CONGESTION", cr.PATIENT_FAILED), ("CANCEL", cr.CLINIC_HANGUP)])
def test_the_patient_not_reached(status: str, expected: str) -> None:
    fl = flow()
    to_dialling(fl)
    out = outcome(fl.feed(f.Dialled("cb-7-1-101", status, 130)))
    assert out is not None and out.outcome == expected and cr.leg_of(expected) in (cr.PATIENT, cr.CLINIC)


def test_nine_closes_as_already_booked_after_a_goodbye() -> None:
    fl = flow()
    fl.start()
    fl.feed(f.Answered("cb-7-1-101", 10))
    cmds = fl.feed(f.Key("cb-7-1-101", "9", 12))
    assert f.Report("already_booked") in cmds and of(cmds, f.Play)[0].media == "sound:bye"
    assert not of(cmds, f.Continue)
    cmds = fl.feed(f.PromptDone("cb-7-1-101", fl._playback, 14))
    assert f.Hangup("cb-7-1-101") in cmds and outcome(cmds).outcome == cr.ALREADY_BOOKED  # type: ignore[union-attr]


def test_nine_and_hanging_up_during_the_goodbye_is_still_already_booked() -> None:
    fl = flow()
    fl.start()
    fl.feed(f.Answered("cb-7-1-101", 10))
    fl.feed(f.Key("cb-7-1-101", "9", 12))
    assert outcome(fl.feed(f.HungUp("cb-7-1-101", 16, 12.5))).outcome == cr.ALREADY_BOOKED  # type: ignore[union-attr]


def test_no_key_the_prompt_is_repeated_then_the_clinic_side_failed() -> None:
    fl = flow()
    fl.start()
    fl.feed(f.Answered("cb-7-1-101", 10))
    assert fl.feed(f.PromptDone("cb-7-1-101", fl._playback, 16)) == [f.StartTimer("key_wait", 8)]
    cmds = fl.feed(f.TimerDue("key_wait", 24))
    assert of(cmds, f.Play)[0].media == "sound:p"  # said again
    fl.feed(f.PromptDone("cb-7-1-101", fl._playback, 30))
    cmds = fl.feed(f.TimerDue("key_wait", 38))
    assert f.Hangup("cb-7-1-101") in cmds and outcome(cmds).outcome == cr.CLINIC_NO_KEY  # type: ignore[union-attr]


def test_admin_hangs_up_without_a_key() -> None:
    fl = flow()
    fl.start()
    fl.feed(f.Answered("cb-7-1-101", 10))
    assert outcome(fl.feed(f.HungUp("cb-7-1-101", 16, 12))).outcome == cr.CLINIC_NO_KEY  # type: ignore[union-attr]


def test_admin_hangs_up_while_the_patient_rings() -> None:
    fl = flow()
    to_dialling(fl)
    assert outcome(fl.feed(f.HungUp("cb-7-1-101", 16, 115))).outcome == cr.CLINIC_HANGUP  # type: ignore[union-attr]


def test_nobody_at_the_clinic_answers() -> None:
    fl = flow("101", "102")
    fl.start()
    assert fl.feed(f.HungUp("cb-7-1-101", 19, 35)) == []
    out = outcome(fl.feed(f.HungUp("cb-7-1-102", 19, 35.1)))
    assert out is not None and out.outcome == cr.CLINIC_NO_ANSWER


def test_asterisk_refusing_every_phone_is_not_started() -> None:
    fl = flow("101")
    fl.start()
    out = outcome(fl.feed(f.OriginateFailed("cb-7-1-101", "Asterisk: 400", 1)))
    assert out is not None and out.outcome == cr.NOT_STARTED


def test_keys_outside_the_prompt_mean_nothing() -> None:
    fl = flow()
    to_dialling(fl)
    assert fl.feed(f.Key("cb-7-1-101", "9", 111)) == []
    assert fl.feed(f.Key("cb-7-1-102", "1", 111)) == []  # not the admin's channel


def test_a_call_that_loses_its_events_ends_at_the_max_timer() -> None:
    fl = flow()
    fl.start()
    fl.feed(f.Answered("cb-7-1-101", 10))
    cmds = fl.feed(f.TimerDue("max_call", 99999))
    assert f.Hangup("cb-7-1-101") in cmds and outcome(cmds).outcome == cr.FAILED  # type: ignore[union-attr]
    assert fl.feed(f.HungUp("cb-7-1-101", 16, 100000)) == []  # done is done


# --- the retry policy and the windows ---------------------------------------------------------
S = cr.CallbackSettings(sms_after=2)


def at(h: int, m: int = 0, day: int = 2) -> float:
    return datetime(2026, 12, day, h, m, tzinfo=TZ).timestamp()  # Wednesday 2 December


def test_opening_hours_edges() -> None:
    hours = S.hours
    assert cr.opening_at(at(9), hours, TZ) == at(9)
    assert cr.opening_at(at(8, 59), hours, TZ) == at(9)
    assert cr.opening_at(at(20, 59), hours, TZ) == at(20, 59)
    assert cr.opening_at(at(21), hours, TZ) == at(9, day=3)  # closes at 21:00 sharp
    sunday_closed = cr.CallbackSettings(closed_days="6 7").hours
    assert cr.opening_at(at(22, day=4), sunday_closed, TZ) == at(9, day=7)  # Friday night -> Monday
    assert cr.opening_at(at(10), cr.CallbackSettings(closed_days="1 2 3 4 5 6 7").hours, TZ) == float("inf")


def test_hours_per_weekday() -> None:
    week = cr.CallbackSettings(week="08:00-20:00,08:00-20:00,08:00-20:00,08:00-20:00,08:00-20:00,10:00-16:00,-")
    hours = week.hours
    assert cr.opening_at(at(7, 59), hours, TZ) == at(8)  # Wednesday opens at 8 here
    assert cr.opening_at(at(20), hours, TZ) == at(8, day=3)
    assert cr.opening_at(at(9, day=5), hours, TZ) == at(10, day=5)  # Saturday: 10:00-16:00 ...
    assert cr.opening_at(at(16, day=5), hours, TZ) == at(8, day=7)  # ... closed at 16:00, Sunday shut
    assert cr.opening_at(at(15, 59, day=5), hours, TZ) == at(15, 59, day=5)
    # a week that does not read keeps the plain hours
    assert cr.CallbackSettings.from_dict({"week": "9-21"}).week == ""
    assert cr.CallbackSettings.from_dict({"week": "10:00-09:00,,,,,,"}).week == ""
    assert cr.parse_week(",,,,,,") == cr.OpeningHours(())


def test_retry_every_five_minutes_for_two_and_a_half_hours() -> None:
    first = at(10)
    r = cr.RequestFacts(created_ts=first - 60, first_try_ts=first)
    steps = cr.after_attempt(cr.CLINIC_NO_ANSWER, r, S, first + 40, TZ)
    assert steps == [cr.WaitUntil(first + 40 + 300, cr.OUTCOME_NAMES[cr.CLINIC_NO_ANSWER])]
    # #32, seed 003: «каждые 5 минут»: the next attempt is due 5 minutes after this one began
    assert cr.after_attempt(cr.CLINIC_NO_ANSWER, r, S, first + 40, TZ, started=first) == [
        cr.WaitUntil(first + 300, cr.OUTCOME_NAMES[cr.CLINIC_NO_ANSWER])]
    assert cr.after_attempt(cr.PATIENT_SHORT, r, S, first + 400, TZ, started=first)[-1] == cr.WaitUntil(
        first + 400, cr.OUTCOME_NAMES[cr.PATIENT_SHORT])  # a call longer than the interval: again at once
    # the last retry that still fits: due exactly at the 2.5 h mark
    assert cr.after_attempt(cr.CLINIC_NO_ANSWER, r, S, first + 9000 - 300, TZ)[-1] == cr.WaitUntil(
        first + 9000, cr.OUTCOME_NAMES[cr.CLINIC_NO_ANSWER])
    assert isinstance(cr.after_attempt(cr.CLINIC_NO_ANSWER, r, S, first + 9000 - 299, TZ)[-1], cr.GiveUp)
    assert isinstance(cr.before_attempt(r, S, first + 9000, TZ), cr.GiveUp)
    assert cr.before_attempt(r, S, first + 8999, TZ) == cr.Go()


def test_a_request_tried_near_closing_has_its_hours_after_the_opening() -> None:
    """#32, seed 003: the robot calls for 2.5 hours of the clinic's time: a request first tried
    at 20:30 (closing 21:00) had half an hour; it is tried again from 9:00 until 11:00."""
    first = at(20, 30)
    r = cr.RequestFacts(created_ts=first, first_try_ts=first)
    assert cr.deadline(r, S, TZ) == at(11, day=3)
    steps = cr.after_attempt(cr.PATIENT_BUSY, r, S, at(20, 58), TZ, started=at(20, 57))
    assert steps[-1] == cr.WaitUntil(at(9, day=3), cr.OUTCOME_NAMES[cr.PATIENT_BUSY])
    assert cr.before_attempt(r, S, at(7, day=3), TZ) == cr.WaitUntil(at(9, day=3), "Нерабочее время")
    assert cr.before_attempt(r, S, at(10, 59, day=3), TZ) == cr.Go()
    assert cr.before_attempt(r, S, at(11, day=3), TZ) == cr.GiveUp("2,5 часа без соединения")
    # a branch open on weekdays only: Friday's last hour, then Monday's first 1.5 hours
    weekdays = cr.CallbackSettings(closed_days="6 7")
    friday = datetime(2026, 12, 4, 20, tzinfo=TZ).timestamp()
    assert cr.deadline(cr.RequestFacts(created_ts=friday, first_try_ts=friday), weekdays, TZ) == datetime(
        2026, 12, 7, 10, 30, tzinfo=TZ).timestamp()
    assert cr.working_deadline(at(10), 60, cr.OpeningHours(()), TZ) == float("inf")  # never open


def test_the_texts_say_the_configured_period() -> None:
    """#32: with the limit set to 5 minutes the reason and the letter no longer say «2,5 часа»."""
    assert [cr.period_words(m) for m in (150, 5, 60, 90, 120, 300, 1, 21, 22, 11)] == [
        "2,5 часа", "5 минут", "1 час", "1,5 часа", "2 часа", "5 часов", "1 минута", "21 минута", "22 минуты",
        "11 минут"]
    short = cr.CallbackSettings(give_up_minutes=5)
    r = cr.RequestFacts(created_ts=at(10), first_try_ts=at(10))
    assert cr.before_attempt(r, short, at(10, 5), TZ) == cr.GiveUp("5 минут без соединения")
    from crm import mail
    req = {"source_name": "НаПоправку", "utm": "", "id": 1, "created_ts": at(10), "patient_name": "", "phone": "+7",
           "doctor": "", "service": "", "desired": "", "comment": ""}
    _, body = mail.callback_letter(req, [], cr.CLOSED_GAVE_UP, TZ, cr.period_words(5))
    assert "за 5 минут" in body and "2,5" not in body


def test_sms_once_after_the_patient_side_failed_enough() -> None:
    first = at(10)
    one = cr.RequestFacts(created_ts=first, first_try_ts=first, patient_failures=1)
    assert not any(isinstance(s, cr.SendSms) for s in cr.after_attempt(cr.PATIENT_NO_ANSWER, one, S, first, TZ))
    two = cr.RequestFacts(created_ts=first, first_try_ts=first, patient_failures=2)
    assert cr.SendSms() in cr.after_attempt(cr.PATIENT_NO_ANSWER, two, S, first, TZ)
    assert cr.SendSms() not in cr.after_attempt(cr.CLINIC_NO_ANSWER, two, S, first, TZ)  # not the patient's fault
    sent = cr.RequestFacts(created_ts=first, first_try_ts=first, patient_failures=3, sms_sent=True)
    assert cr.SendSms() not in cr.after_attempt(cr.PATIENT_SHORT, sent, S, first, TZ)


def test_closing_outcomes() -> None:
    r = cr.RequestFacts(created_ts=at(10), first_try_ts=at(10))
    assert cr.after_attempt(cr.CONTACTED, r, S, at(10, 5), TZ) == [cr.Close(cr.CLOSED_CONTACTED)]
    assert cr.after_attempt(cr.ALREADY_BOOKED, r, S, at(10, 5), TZ)[0].outcome == cr.CLOSED_ALREADY_BOOKED  # type: ignore[union-attr]


def test_before_an_attempt_the_flaw_is_fixed() -> None:
    base = cr.RequestFacts(created_ts=at(10))
    assert cr.before_attempt(base, S, at(10, 1), TZ) == cr.Go()
    booked = cr.RequestFacts(created_ts=at(10), booked_since=True)
    assert cr.before_attempt(booked, S, at(10, 1), TZ).outcome == cr.CLOSED_OTHER_MEANS  # type: ignore[union-attr]
    talked = cr.RequestFacts(created_ts=at(10), talked_since=True)
    assert cr.before_attempt(talked, S, at(23), TZ).outcome == cr.CLOSED_OTHER_MEANS  # type: ignore[union-attr]
    assert cr.before_attempt(base, S, at(7), TZ) == cr.WaitUntil(at(9), "Нерабочее время")
    busy = cr.RequestFacts(created_ts=at(10), admins_free=False)
    assert cr.before_attempt(busy, S, at(10, 1), TZ) == cr.WaitUntil(at(10, 1) + cr.BUSY_WAIT, "Все администраторы заняты")


def test_request_status_seven_full_days_today_included() -> None:
    made = date(2026, 12, 1)
    assert cr.request_status("open", made, date(2026, 12, 7)) == "актуальная"
    assert cr.request_status("open", made, date(2026, 12, 8)) == "просрочена"
    assert cr.request_status("closed", made, date(2026, 12, 30)) == "закрыта"


def test_joins_within_a_day() -> None:
    assert cr.joins(1000.0, 1000.0 + 24 * 3600)
    assert not cr.joins(1000.0, 1000.0 + 24 * 3600 + 1)


def test_lines_are_shared_fairly() -> None:
    assert cr.free_lines(4, mine=0, others=0, others_waiting=False) == 4
    assert cr.free_lines(4, mine=0, others=4, others_waiting=True) == 0
    assert cr.free_lines(4, mine=1, others=1, others_waiting=True) == 1  # up to half each
    assert cr.free_lines(4, mine=2, others=0, others_waiting=True) == 0
    assert cr.free_lines(3, mine=0, others=1, others_waiting=True) == 2


def test_settings_are_tolerant() -> None:
    s = cr.CallbackSettings.from_dict({"retry_minutes": "x", "opens": "25:99", "sms_after": "4", "bogus": 1})
    assert s.retry_minutes == 5 and s.opens == "09:00" and s.sms_after == 4


def test_what_is_said() -> None:
    assert cr.admin_prompt("НаПоправку").startswith("Заявка на запись с НаПоправку.")
    # #32, seed 003: «Когда администратор нажимает на кнопку, робот ему проговаривает детали
    # заявки пациента: «Заявка на запись с НаПоправку»; …» — after the key too, first
    assert cr.details("НаПоправку", "Иванов Иван Иванович", "") == [
        "Заявка на запись с НаПоправку.", "Запись к врачу — Иванов Иван Иванович.", "Соединяю с пациентом."]
    assert cr.details("НаПоправку", "", "Чистка")[1] == "Запись на услугу — Чистка."
    assert cr.sms_text("НаПоправку", "+7 495 111-00-01").endswith("перезвоните по номеру: +7 495 111-00-01")


# --- the reports' part ------------------------------------------------------------------------
def test_callback_report_per_day_on_plain_rows() -> None:
    from crm.rules.callback_report import per_day

    def row(h: int, state: str, outcome: str = "", closed_after: float | None = None, attempts: int = 1,
            day: int = 2) -> dict:
        created = at(h, day=day)
        return {"created_ts": created, "state": state, "outcome": outcome, "attempts": attempts,
                "closed_ts": None if closed_after is None else created + closed_after}

    rows = [row(10, "closed", cr.CLOSED_CONTACTED, 120), row(11, "closed", cr.CLOSED_CONTACTED, 600),
            row(12, "closed", cr.CLOSED_GAVE_UP, 9000, attempts=30), row(13, "open", attempts=0),
            row(0, "closed", cr.CLOSED_OTHER_MEANS, 60, attempts=0, day=3),  # 00:00 Moscow: the 3rd
            row(9, "closed", cr.CLOSED_ALREADY_BOOKED, 30, day=3), row(9, "closed", cr.CLOSED_CANCELLED, 30, day=3)]
    days, total = per_day(rows, TZ)
    assert [d.day for d in days] == [date(2026, 12, 2), date(2026, 12, 3)]
    first = days[0]
    assert (first.requests, first.contacted, first.gave_up, first.open, first.attempts) == (4, 2, 1, 1, 32)
    assert first.median_minutes == pytest.approx(6.0) and first.contacted_share == pytest.approx(50.0)
    second = days[1]
    assert (second.other_means, second.already_booked, second.cancelled, second.median_minutes) == (1, 1, 1, None)
    assert (total.requests, total.contacted, total.attempts) == (7, 2, 34)
    none_days, none_total = per_day([], TZ)
    assert none_days == [] and none_total.requests == 0 and none_total.contacted_share is None

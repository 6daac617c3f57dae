"""The confirmation IVR state machine and the escort rules (seed 002), at their edges."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from crm.rules import escort as rules
from crm.rules.escort import CONFIRMATION, DETAILS, REMINDER, EscortSettings, Facts, Go, Skip, Wait
from pbx.robots import flow as f
from pbx.robots import ivr
from pbx.robots.ivr import ConfirmationIvr

TZ = ZoneInfo("Asia/Yekaterinburg")  # not Moscow: the clinic's own time zone is what counts


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ).timestamp()


def plays(cmds) -> list[str]:
    return [c.media for c in cmds if isinstance(c, f.Play)]  # the default media are the prompts' names


# the facts as the flow runner gives them, on the robot's channel
def Answered(at: float) -> f.Answered:  # noqa: N802
    return f.Answered("robot", at)


def Key(digit: str, at: float) -> f.Key:  # noqa: N802
    return f.Key("robot", digit, at)


def NoInput(at: float) -> f.TimerDue:  # noqa: N802
    return f.TimerDue(ivr.NO_INPUT, at)


def HungUp(at: float) -> f.HungUp:  # noqa: N802
    return f.HungUp("robot", 16, at)


def PromptDone(seq: int, at: float) -> f.PromptDone:  # noqa: N802
    return f.PromptDone("robot", f"robot-pb-{seq}", at)


def run(m: ConfirmationIvr, *events) -> list:
    out = []
    for e in events:
        out += m.feed(e)
    return out


def done(m: ConfirmationIvr) -> PromptDone:
    return PromptDone(m.seq, 0.0)


# --- IVR -----------------------------------------------------------------------------------

@pytest.mark.parametrize("digit,outcome", [("1", "confirmed"), ("2", "reschedule"), ("3", "cancelled")])
def test_choice_decides_at_once_and_closes(digit: str, outcome: str) -> None:
    m = ConfirmationIvr()
    assert plays(m.feed(Answered(0))) == ["main"]
    m.feed(done(m))
    cmds = m.feed(Key(digit, 5))
    assert cmds[0] == f.Report(outcome) and plays(cmds) == [ivr.CLOSING[outcome]]
    end = m.feed(done(m))
    assert f.Hangup("robot") in end and end[-1] == f.Outcome(outcome, digit, 0.0)


def test_barge_in_stops_the_prompt_and_stale_done_is_ignored() -> None:
    m = ConfirmationIvr()
    m.feed(Answered(0))
    first = m.seq
    cmds = m.feed(Key("0", 1))  # repeat while the main prompt plays
    assert isinstance(cmds[0], f.StopPlayback) and plays(cmds) == ["main"]
    assert m.feed(PromptDone(first, 2)) == []  # the stopped playback reports late
    cmds = m.feed(Key("1", 3))
    assert f.Report("confirmed") in cmds


def test_zero_then_one() -> None:
    m = ConfirmationIvr()
    run(m, Answered(0))
    run(m, done(m))
    assert plays(m.feed(Key("0", 1))) == ["main"]
    run(m, done(m))
    assert f.Report("confirmed") in m.feed(Key("1", 9))
    assert m.feed(done(m))[-1].keys == "01"


def test_invalid_keys_and_silence_have_a_limit() -> None:
    m = ConfirmationIvr(max_errors=3)
    run(m, Answered(0))
    run(m, done(m))
    assert plays(m.feed(Key("7", 1))) == ["invalid"]
    assert plays(m.feed(done(m))) == ["main"]
    assert isinstance(m.feed(done(m))[0], f.StartTimer)
    assert plays(m.feed(NoInput(10))) == ["no_input"]
    run(m, done(m))
    run(m, done(m))
    assert plays(m.feed(Key("#", 20))) == ["goodbye"]
    assert m.feed(done(m))[-1] == f.Outcome("no_key", "7#", 0.0)
    assert m.feed(Key("1", 30)) == []  # after the end nothing happens


def test_repeats_are_limited_too() -> None:
    m = ConfirmationIvr(max_repeats=2, max_errors=1)
    run(m, Answered(0))
    assert plays(m.feed(Key("0", 1))) == ["main"]
    assert plays(m.feed(Key("0", 2))) == ["main"]
    assert plays(m.feed(Key("0", 3))) == ["goodbye"]  # the third 0 counts as an error


def test_hangup_keeps_a_choice_made_and_stale_timer_ignored() -> None:
    m = ConfirmationIvr()
    run(m, Answered(0), PromptDone(1, 1))
    m.feed(Key("3", 2))
    assert m.feed(NoInput(3)) == []
    assert m.feed(HungUp(4))[-1] == f.Outcome("cancelled", "3", 0)  # answered at 0
    m2 = ConfirmationIvr()
    m2.feed(Answered(0))
    assert m2.feed(HungUp(1))[-1] == f.Outcome("hangup", "", 0)
    assert m2.feed(HungUp(2)) == []


# --- rules ---------------------------------------------------------------------------------

def facts(**kw) -> Facts:
    base = dict(appointment_id=1, status="unconfirmed", starts_ts=at(25, 10), created_ts=at(20, 12),
                phones=(("+79161234567", "mobile"),))
    return Facts(**(base | kw))


S = EscortSettings()


def test_confirmation_window_edges() -> None:
    f = facts()
    assert rules.decide(CONFIRMATION, f, S, at(24, 8, 59), TZ) == Wait(at(24, 9))
    assert rules.decide(CONFIRMATION, f, S, at(24, 9), TZ) == Go("robot")
    assert rules.decide(CONFIRMATION, f, S, at(24, 19, 59), TZ) == Go("robot")
    assert isinstance(rules.decide(CONFIRMATION, f, S, at(24, 20), TZ), Skip)
    no_call = EscortSettings(confirmation_mode="messages")
    assert rules.decide(CONFIRMATION, f, no_call, at(24, 10), TZ) == Go("messages")


@pytest.mark.parametrize("kw,reason", [
    (dict(status="confirmed"), "Статус"),
    (dict(created_ts=at(25, 8)), "в день приёма"),
    (dict(created_ts=at(24, 8)), "сегодня на завтра"),
    (dict(source="online_service"), "Онлайн-запись на услугу"),
    (dict(kind="online_consultation"), "онлайн-консультацию"),
    (dict(anonymous=True), "Анонимная"),
    (dict(source="prodoctorov_club"), "Клуба ПроДокторов"),
    (dict(doctor_anonymous=True), "анонимные"),
    (dict(consent=False), "согласия"),
    (dict(opted_out=True), "отказался"),
    (dict(phones=(("+79161234567", "mobile"), ("+74951234567", "landline"))), "стационарный"),
    (dict(phones=(("+4930123456", "foreign"),)), "иностранный"),
    (dict(phones=()), "мобильного"),
])
def test_confirmation_exclusions(kw, reason) -> None:
    d = rules.decide(CONFIRMATION, facts(**kw), S, at(24, 10), TZ)
    assert isinstance(d, Skip) and reason in d.reason


def test_details_rules() -> None:
    created = at(20, 12)
    assert rules.decide(DETAILS, facts(), S, created, TZ) == Go("messages")
    night = facts(created_ts=at(20, 21, 30))
    assert "ночью" in rules.decide(DETAILS, night, S, at(20, 21, 30), TZ).reason
    early = facts(created_ts=at(20, 5, 59))
    assert isinstance(rules.decide(DETAILS, early, S, at(20, 5, 59), TZ), Skip)
    assert rules.decide(DETAILS, facts(created_ts=at(20, 6)), S, at(20, 6), TZ) == Go("messages")
    soon = facts(starts_ts=at(20, 14), created_ts=at(20, 12))
    assert "меньше двух часов" in rules.decide(DETAILS, soon, S, at(20, 12), TZ).reason
    just = facts(starts_ts=at(20, 14, 1), created_ts=at(20, 12))
    assert rules.decide(DETAILS, just, S, at(20, 12), TZ) == Go("messages")
    # the booking form's tick sends at once, even at night, but never past the exclusions
    assert rules.decide(DETAILS, night, S, at(20, 21, 30), TZ, forced=True) == Go("messages")
    assert isinstance(rules.decide(DETAILS, facts(opted_out=True), S, created, TZ, forced=True), Skip)
    off = EscortSettings(details_enabled=False)
    assert rules.decide(DETAILS, facts(), off, created, TZ).reason == "Сценарий выключен"
    assert rules.decide(DETAILS, facts(), off, created, TZ, forced=True) == Go("messages")


def test_reminder_rules() -> None:
    f = facts(status="confirmed")
    assert rules.decide(REMINDER, f, S, at(25, 7, 59), TZ) == Wait(at(25, 8))
    assert rules.decide(REMINDER, f, S, at(25, 8), TZ) == Go("messages")
    assert rules.decide(REMINDER, facts(status="unconfirmed"), S, at(25, 8), TZ) == Go("messages")
    assert isinstance(rules.decide(REMINDER, facts(status="cancelled"), S, at(25, 8), TZ), Skip)
    early = facts(starts_ts=at(25, 7, 30))  # 05:30 would be the reminder: outside 06-21
    assert "06:00" in rules.decide(REMINDER, early, S, at(25, 5, 30), TZ).reason
    edge = facts(starts_ts=at(25, 8))  # 06:00 exactly is inside
    assert rules.decide(REMINDER, edge, S, at(25, 6), TZ) == Go("messages")
    assert isinstance(rules.decide(REMINDER, f, S, at(25, 10), TZ), Skip)


def test_after_call_retries_and_fallbacks() -> None:
    s = EscortSettings(robot_retries=2, retry_minutes=30)
    end = at(24, 20)
    assert rules.after_call("busy", 1, s, at(24, 10), end) == [rules.RetryCall(at(24, 10, 30))]
    assert rules.after_call("no_answer", 2, s, at(24, 10), end) == [rules.RetryCall(at(24, 10, 30))]
    assert rules.after_call("no_answer", 3, s, at(24, 10), end) == [rules.SendMessages("confirm")]
    assert rules.after_call("busy", 1, s, at(24, 19, 40), end) == [rules.SendMessages("confirm")]
    for outcome in ("hangup", "no_key", "machine", "failed", "interrupted"):
        assert rules.after_call(outcome, 1, s, at(24, 10), end) == [rules.SendMessages("confirm")]
    # the choice acts at once (crm.escort.apply_choice runs these steps); after the call only
    # the reschedule link is left
    assert rules.choice_steps("cancelled") == [rules.SetStatus("cancelled"), rules.OfferSlot()]
    assert rules.choice_steps("confirmed") == [rules.SetStatus("confirmed")]
    assert rules.choice_steps("reschedule") == [rules.MarkReschedule()]
    assert rules.after_call("cancelled", 1, s, 0, end) == [] == rules.after_call("confirmed", 1, s, 0, end)
    assert rules.after_call("reschedule", 1, s, 0, end) == [rules.SendMessages("reschedule_link")]


def test_a_call_asterisk_refused_is_tried_again_soon_then_messaged() -> None:
    """The patient was never dialled (e.g. the Stasis app was gone): a minute later again,
    a few times within the window, then the messages; never a job left running."""
    s = EscortSettings(robot_retries=0, retry_minutes=30)
    end = at(24, 20)
    assert rules.after_call("not_started", 1, s, at(24, 10), end) == [rules.RetryCall(at(24, 10, 1))]
    assert rules.after_call("not_started", 4, s, at(24, 10), end) == [rules.RetryCall(at(24, 10, 1))]
    assert rules.after_call("not_started", 5, s, at(24, 10), end) == [rules.SendMessages("confirm")]
    assert rules.after_call("not_started", 1, s, at(24, 19, 59) + 30, end) == [rules.SendMessages("confirm")]


def test_channels_prices_wording_and_replies() -> None:
    assert rules.channel_chain(facts(push_enabled=True)) == ("push", "whatsapp", "sms")
    assert rules.channel_chain(facts()) == ("whatsapp", "sms")
    assert rules.price("push", CONFIRMATION, True) == 3 and rules.price("push", CONFIRMATION, False) == 0
    assert rules.price("push", REMINDER, True) == 0
    assert rules.price("whatsapp", DETAILS, False) == 2 and rules.price("sms", DETAILS, False) == 5
    w = rules.Wording("Анна", "Сергеевна", "Кузнецова Ольга Викторовна", "стоматолог-терапевт", "Улыбка",
                      datetime(2026, 11, 25, 10, 30, tzinfo=TZ))
    text = rules.robot_text(w)
    assert text.startswith("Анна Сергеевна, здравствуйте. Звоним подтвердить запись к врачу.")
    assert "Вас примет стоматолог-терапевт, Кузнецова Ольга Викторовна в клинике Улыбка" in text
    assert "Ждём вас 25 ноября в 10:30" in text and text.endswith("Для повтора информации, нажмите 0.")
    assert "1 — подтвердить" in rules.message_text("confirm", w, "http://x/e/1")
    assert rules.reply_choice(" 1 ") == "confirmed" and rules.reply_choice("3.") == "cancelled"
    assert rules.reply_choice("12") is None and rules.reply_choice("да") is None
    assert EscortSettings.from_dict({"robot_retries": "x", "confirmation_mode": "fax", "amd": 1}) == \
        EscortSettings(amd=True)


def test_the_confirmation_push_goes_in_a_minute_with_or_without_the_robot() -> None:
    """Seed 002, both «With a robot call» and «Without calling»: «push notification in a minute»."""
    assert rules.first_try_delay(rules.PUSH, rules.CONFIRMATION) == 60
    assert rules.first_try_delay(rules.WHATSAPP, rules.CONFIRMATION) == 0
    assert rules.first_try_delay(rules.PUSH, rules.DETAILS) == 0 == rules.first_try_delay(rules.PUSH, rules.REMINDER)


def test_what_the_sms_tick_came_to() -> None:
    """The booking form's «СМС оповещение»: sent, queued, or not sent and why."""
    from crm.rules.escort import booking_message_notice as notice

    base = dict(requested=True, enabled=True, excluded=None, job_state=None, job_reason="", message_state=None,
                message_error="")
    assert notice(**base | {"requested": False}) is None  # no tick: nothing to say
    assert notice(**base) == ("ok", "СМС с деталями записи поставлено в очередь: уйдёт в ближайшие минуты")
    assert notice(**base | {"job_state": "pending"})[0] == "ok"
    assert notice(**base | {"excluded": "В контактах пациента стационарный или иностранный номер"}) == (
        "warn", "СМС не отправлено: В контактах пациента стационарный или иностранный номер")
    assert "выключен" in notice(**base | {"enabled": False})[1]
    assert notice(**base | {"job_state": "skipped", "job_reason": "Приём перенесён"}) == (
        "warn", "СМС не отправлено: Приём перенесён")
    assert notice(**base | {"job_state": "done", "message_state": "sent"}) == ("ok", "СМС с деталями записи отправлено")
    assert notice(**base | {"message_state": "delivered", "channel": "whatsapp"})[1].startswith("WhatsApp")
    assert notice(**base | {"message_state": "failed", "message_error": "шлюз: 503"}) == (
        "warn", "СМС не отправлено: шлюз: 503")

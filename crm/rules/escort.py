"""Pre-visit escort rules (seed 002) as pure functions: which scenario may act on an
appointment, when, through which channels, what the robot and the messages say, and what a
call's outcome leads to. The adapter reads the facts and the clock and passes them in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from crm.rules.plain import tolerant_values

DETAILS, CONFIRMATION, REMINDER = "details", "confirmation", "reminder"
SCENARIOS = {DETAILS: "Детали записи", CONFIRMATION: "Подтверждение приёма", REMINDER: "Напоминание о приёме"}
MESSAGE_WINDOW = (time(6), time(21))  # details and reminders
CALL_WINDOW = (time(9), time(20))  # confirmation: calls and messages
TWO_HOURS = 2 * 3600.0
PUSH, WHATSAPP, SMS = "push", "whatsapp", "sms"
CHANNELS = {PUSH: "Push", WHATSAPP: "WhatsApp", SMS: "СМС"}
MONTHS = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября",
          "октября", "ноября", "декабря")


@dataclass(frozen=True)
class EscortSettings:
    """Per clinic, changed in the panel; read at each job's run, so a change applies at once
    to jobs already scheduled."""

    details_enabled: bool = True
    confirmation_enabled: bool = True
    confirmation_mode: str = "robot"  # robot | messages
    reminder_enabled: bool = True
    robot_retries: int = 2  # further attempts after busy / no answer
    retry_minutes: int = 30
    amd: bool = False  # answering-machine detection (Asterisk AMD())
    max_concurrent_calls: int = 5
    caller_id: str = ""  # outbound caller ID of the robot

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EscortSettings:
        """Tolerant: unknown keys ignored, wrong types fall back to the defaults."""
        values = tolerant_values(cls, data, int_max=1000, str_max=40)
        if values.get("confirmation_mode") not in (None, "robot", "messages"):
            values.pop("confirmation_mode")
        return cls(**values)


@dataclass(frozen=True)
class Facts:
    """What the rules need about one appointment and its patient."""

    appointment_id: int
    status: str
    starts_ts: float
    created_ts: float
    source: str = "panel"  # panel | online_service | online_doctor | prodoctorov_club
    kind: str = "visit"  # visit | online_consultation
    anonymous: bool = False
    doctor_anonymous: bool = False
    consent: bool = True
    opted_out: bool = False
    phones: tuple[tuple[str, str], ...] = ()  # (e164, mobile | landline | foreign)
    push_enabled: bool = False

    @property
    def mobile(self) -> str | None:
        return next((p for p, k in self.phones if k == "mobile"), None)


# --- decisions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Wait:
    until: float


@dataclass(frozen=True)
class Go:
    mode: str  # robot | messages


Decision = Skip | Wait | Go


def exclusion(scenario: str, f: Facts) -> str | None:
    """The seed's reasons a scenario sends nothing, in the order the clinic reads them."""
    if f.source == "online_service":
        return "Онлайн-запись на услугу"
    if f.source == "online_doctor" and scenario == DETAILS:
        return "Онлайн-запись к врачу"
    if f.kind == "online_consultation":
        return "Запись на онлайн-консультацию"
    if f.anonymous:
        return "Анонимная запись"
    if f.source == "prodoctorov_club":
        return "Запись в рамках Клуба ПроДокторов"
    if f.doctor_anonymous:
        return "В профиле врача включены анонимные записи"
    if not f.consent:
        return "Нет согласия на обработку персональных данных"
    if f.opted_out:
        return "Пациент отказался от уведомлений"
    if any(kind in ("landline", "foreign") for _, kind in f.phones):
        return "В контактах пациента стационарный или иностранный номер"
    if f.mobile is None:
        return "Нет мобильного номера"
    return None


def span(window: tuple[time, time]) -> str:
    """``06:00–21:00``: a window as the skip reasons name it (from the constant, never retyped)."""
    return f"{window[0]:%H:%M}–{window[1]:%H:%M}"


def local(ts: float, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(ts, tz)


def in_window(ts: float, tz: tzinfo, window: tuple[time, time]) -> bool:
    t = local(ts, tz).time()
    return window[0] <= t < window[1]


def message_time(ts: float, tz: tzinfo, scenario: str, *, asked_for_now: bool = False) -> float:
    """When a message queued at ``ts`` may go out: within its window (details and reminders
    MESSAGE_WINDOW, the confirmation's CALL_WINDOW, clinic time); one queued at night (after a
    «Позвонить сейчас» at 00:24) waits for the window's next opening. The booking form's
    «СМС оповещение» (``asked_for_now``) goes at once, even at night (seed 002)."""
    if asked_for_now:
        return ts
    window = CALL_WINDOW if scenario == CONFIRMATION else MESSAGE_WINDOW
    t = local(ts, tz)
    if window[0] <= t.time() < window[1]:
        return ts
    day = t.date() if t.time() < window[0] else t.date() + timedelta(days=1)
    return datetime.combine(day, window[0], tz).timestamp()


def confirmation_window(f: Facts, tz: tzinfo) -> tuple[float, float]:
    """The day before the appointment, within CALL_WINDOW of the clinic's time."""
    day = local(f.starts_ts, tz).date() - timedelta(days=1)
    start = datetime.combine(day, CALL_WINDOW[0], tz).timestamp()
    return start, datetime.combine(day, CALL_WINDOW[1], tz).timestamp()


def due(scenario: str, f: Facts, tz: tzinfo) -> float:
    """When a scenario's job first runs."""
    if scenario == DETAILS:
        return f.created_ts
    if scenario == CONFIRMATION:
        return confirmation_window(f, tz)[0]
    return f.starts_ts - TWO_HOURS


def decide(scenario: str, f: Facts, s: EscortSettings, now: float, tz: tzinfo, *,
           forced: bool = False) -> Decision:
    """Run, wait or skip (with the reason shown in the campaign view)."""
    enabled = {DETAILS: s.details_enabled, CONFIRMATION: s.confirmation_enabled,
               REMINDER: s.reminder_enabled}[scenario]
    if not enabled and not forced:
        return Skip("Сценарий выключен")
    reason = exclusion(scenario, f)
    if reason:
        return Skip(reason)
    if scenario == DETAILS:
        if f.status not in ("unconfirmed", "confirmed"):
            return Skip("Статус записи не «Не подтверждён» и не «Подтверждён»")
        if forced:
            return Go("messages")  # the booking form's «СМС оповещение» tick
        if not in_window(f.created_ts, tz, MESSAGE_WINDOW):
            return Skip(f"Запись создана ночью (вне {span(MESSAGE_WINDOW)}): детали не отправляются")
        if f.starts_ts - now <= TWO_HOURS:
            return Skip("До приёма меньше двух часов")
        if not in_window(now, tz, MESSAGE_WINDOW):
            return Skip(f"Вне времени рассылки {span(MESSAGE_WINDOW)}")
        return Go("messages")
    if scenario == CONFIRMATION:
        if f.status != "unconfirmed":
            return Skip("Статус записи не «Не подтверждён»")
        created, starts = local(f.created_ts, tz).date(), local(f.starts_ts, tz).date()
        if created == starts:
            return Skip("Запись создана в день приёма")
        if created == starts - timedelta(days=1):
            return Skip("Запись создана сегодня на завтра")
        start, end = confirmation_window(f, tz)
        if now < start:
            return Wait(start)
        if now >= end:
            return Skip(f"Окно подтверждения накануне ({span(CALL_WINDOW)}) прошло")
        return Go("robot" if s.confirmation_mode == "robot" else "messages")
    # reminder
    if f.status not in ("unconfirmed", "confirmed"):
        return Skip("Статус записи не «Не подтверждён» и не «Подтверждён»")
    at = f.starts_ts - TWO_HOURS
    if not in_window(at, tz, MESSAGE_WINDOW):
        return Skip(f"Напоминание пришлось бы вне {span(MESSAGE_WINDOW)}")
    if now < at:
        return Wait(at)
    if now >= f.starts_ts:
        return Skip("Приём уже начался")
    return Go("messages")


# --- after the robot's call ----------------------------------------------------------------
@dataclass(frozen=True)
class SetStatus:
    status: str


@dataclass(frozen=True)
class MarkReschedule:
    pass


@dataclass(frozen=True)
class OfferSlot:
    """A cancelled slot goes to the waiting list."""


@dataclass(frozen=True)
class RetryCall:
    at: float


@dataclass(frozen=True)
class SendMessages:
    kind: str  # confirm | reschedule_link


Step = SetStatus | MarkReschedule | OfferSlot | RetryCall | SendMessages
RETRYABLE = frozenset({"busy", "no_answer"})
# Asterisk refused the call (e.g. the Stasis app was gone): the patient heard nothing, so the
# robot tries again a minute later, a few times, before falling back to the messages
NOT_STARTED = "not_started"
NOT_STARTED_RETRY_SECONDS = 60
NOT_STARTED_ATTEMPTS = 5


def choice_steps(choice: str) -> list[SetStatus | MarkReschedule | OfferSlot]:
    """What the patient's choice does to the schedule, at once, whichever way it came (a robot
    key while the robot still talks, a message reply, the link page): 1 confirms, 3 cancels and
    offers the freed slot to the waiting list, 2 marks the appointment to be moved."""
    if choice == "confirmed":
        return [SetStatus("confirmed")]
    if choice == "cancelled":
        return [SetStatus("cancelled"), OfferSlot()]
    if choice == "reschedule":
        return [MarkReschedule()]
    raise ValueError(f"unknown choice {choice!r}")


def after_call(outcome: str, attempt: int, s: EscortSettings, now: float, window_end: float) -> list[Step]:
    """What is left to do when the robot's call has ended (the choice itself was applied when
    the key came, ``choice_steps``). The seed's fallbacks: an unsuccessful call (no answer,
    busy, hang-up, no key, machine, failure) ends in the confirmation message; busy / no answer
    is first retried; a patient who asked to move gets the link to choose another time."""
    if outcome in ("confirmed", "cancelled"):
        return []
    if outcome == "reschedule":
        return [SendMessages("reschedule_link")]
    if outcome == NOT_STARTED and attempt < NOT_STARTED_ATTEMPTS:
        at = now + NOT_STARTED_RETRY_SECONDS
        if at < window_end:
            return [RetryCall(at)]
    if outcome in RETRYABLE and attempt <= s.robot_retries:
        at = now + s.retry_minutes * 60
        if at < window_end:
            return [RetryCall(at)]
    return [SendMessages("confirm")]


def channel_chain(f: Facts) -> tuple[str, ...]:
    """Push (if the app's notifications are on), then WhatsApp (if the number has an
    account: the gateway says), then SMS."""
    return (PUSH, WHATSAPP, SMS) if f.push_enabled else (WHATSAPP, SMS)


PUSH_DELAY = 60.0


def first_try_delay(channel: str, scenario: str) -> float:
    """Seed 002: the confirmation's push goes «in a minute», with the robot (after its
    unsuccessful call) and without it; everything else goes at once."""
    return PUSH_DELAY if channel == PUSH and scenario == CONFIRMATION else 0.0


def price(channel: str, scenario: str, with_robot: bool) -> int:
    """Roubles per message (seed 002)."""
    if channel == PUSH:
        return 3 if scenario == CONFIRMATION and with_robot else 0
    return {WHATSAPP: 2, SMS: 5}.get(channel, 0)


# --- what is said ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Wording:
    first_name: str
    middle_name: str
    doctor: str
    specialty: str
    clinic: str
    starts: datetime  # local

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.middle_name) if p)

    @property
    def when(self) -> str:
        return f"{self.starts.day} {MONTHS[self.starts.month - 1]} в {self.starts:%H:%M}"


def robot_text(w: Wording) -> str:
    return (
        f"{w.name}, здравствуйте. Звоним подтвердить запись к врачу. Вас примет {w.specialty}, "
        f"{w.doctor} в клинике {w.clinic}. Ждём вас {w.when}. Если придёте, нажмите 1. "
        "Если хотите перенести приём, нажмите 2. Отменить запись, нажмите 3. "
        "Для повтора информации, нажмите 0."
    )


def message_text(kind: str, w: Wording, link: str) -> str:
    if kind == "details":
        return (f"{w.clinic}: {w.name}, вы записаны к врачу ({w.specialty}, {w.doctor}) на {w.when}. "
                f"Подробности: {link}")
    if kind == "confirm":
        return (f"{w.clinic}: {w.name}, ждём вас {w.when} у врача ({w.specialty}, {w.doctor}). "
                f"Подтвердите запись: {link} или ответьте цифрой: 1 — подтвердить, "
                "2 — перенести, 3 — отменить.")
    if kind == "reschedule_link":
        return f"{w.clinic}: чтобы перенести запись на {w.when}, выберите другое время: {link}"
    if kind == "reminder":
        return (f"{w.clinic}: {w.name}, напоминаем о приёме сегодня в {w.starts:%H:%M} "
                f"у врача ({w.specialty}, {w.doctor}). {link}")
    raise ValueError(f"unknown message kind {kind!r}")


def reply_choice(text: str) -> str | None:
    """A WhatsApp/SMS reply "1", "2" or "3" (surrounding spaces and punctuation tolerated)."""
    digits = [ch for ch in text.strip() if ch.isdigit()]
    if len(digits) != 1 or digits[0] not in "123":
        return None
    return {"1": "confirmed", "2": "reschedule", "3": "cancelled"}[digits[0]]


def booking_message_notice(requested: bool, enabled: bool, excluded: str | None, job_state: str | None,
                           job_reason: str, message_state: str | None, message_error: str,
                           channel: str = "sms") -> tuple[str, str] | None:
    """What the booking form's «СМС оповещение» tick came to, for the administrator who just
    booked: (``ok`` | ``warn``, text). Sent, queued, or not sent and why — never a bare
    «записан» when nothing went out (a landline, no consent, the scenario off, a gateway error)."""
    if not requested:
        return None
    if not enabled:
        return "warn", "СМС не отправлено: сценарий «Детали записи» выключен в настройках сопровождения"
    if excluded:
        return "warn", f"СМС не отправлено: {excluded}"
    if job_state == "skipped":
        return "warn", f"СМС не отправлено: {job_reason or 'сценарий пропущен'}"
    name = CHANNELS.get(channel, channel)
    if message_state in ("sent", "delivered"):
        return "ok", f"{name} с деталями записи отправлено" + (" и доставлено" if message_state == "delivered" else "")
    if message_state in ("failed", "no_account", "undelivered"):
        return "warn", f"{name} не отправлено: {message_error or 'шлюз сообщений отказал'}"
    return "ok", "СМС с деталями записи поставлено в очередь: уйдёт в ближайшие минуты"

"""The website callback robot's rules (seed 003), each named once. Pure: time arrives as an
argument, facts come as plain values; the storage (``crm.callbacks``) fetches them.

- :func:`contacted` — the patient counts as reached only when bridged for more than 10 s.
- :func:`leg_of` — which side an attempt failed on (clinic / patient) or that it closed.
- :func:`opening_at` — a call is placed only within the branch's opening hours; outside them
  it waits for the next opening (9:00 by default).
- :func:`before_attempt` — the seed's flaw fixed: a patient who has booked or talked with the
  clinic since the request is not called again; the 2.5 h end; opening hours; lines.
- :func:`after_attempt` — the one retry policy: every 5 min from the first attempt for
  2.5 h, the SMS once after a few patient-side failures, then give up and e-mail.
- :func:`request_status` — актуальная / закрыта / просрочена (7 full days, today included).
- :func:`joins` — a request of the same number and source within 24 h joins the open one.
- :func:`free_lines` — robot lines shared fairly with the confirmation robot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm.rules.plain import tolerant_values

CONTACT_MIN_TALK = 10.0  # seconds bridged with the patient; more than this closes the request
RETRY_SPACING = 5 * 60
GIVE_UP_AFTER = int(2.5 * 3600)  # from the first attempt
EXPIRES_DAYS = 7  # a request is current for 7 full days, today included
JOIN_WINDOW = 24 * 3600
BUSY_WAIT = 30.0  # every administrator on a call: look again in 30 s (not an attempt)

# outcomes of one attempt (the flow's ``Outcome.outcome``)
CONTACTED = "contacted"
ALREADY_BOOKED = "already_booked"
CLINIC_NO_ANSWER = "clinic_no_answer"  # no administrator picked up
CLINIC_NO_KEY = "clinic_no_key"  # picked up and hung up (or stayed silent) without a key
CLINIC_HANGUP = "clinic_hangup"  # pressed a key, then hung up before the patient answered
PATIENT_NO_ANSWER = "patient_no_answer"
PATIENT_BUSY = "patient_busy"
PATIENT_SHORT = "patient_short"  # answered, but bridged for 10 s or less
PATIENT_FAILED = "patient_failed"  # the patient's number could not be reached at all
NOT_STARTED = "not_started"  # Asterisk refused the call
INTERRUPTED = "interrupted"  # the server or Asterisk restarted mid-call
FAILED = "failed"  # the call ran too long or its events never came

CLINIC, PATIENT = "clinic", "patient"
_CLINIC_SIDE = {CLINIC_NO_ANSWER, CLINIC_NO_KEY, CLINIC_HANGUP, NOT_STARTED, INTERRUPTED, FAILED}
_PATIENT_SIDE = {PATIENT_NO_ANSWER, PATIENT_BUSY, PATIENT_SHORT, PATIENT_FAILED}

# how a request closes
CLOSED_CONTACTED = "contacted"
CLOSED_ALREADY_BOOKED = "already_booked"
CLOSED_OTHER_MEANS = "other_means"  # booked or talked with the clinic since the request
CLOSED_GAVE_UP = "gave_up"  # 2.5 h without a connection: the clinic was e-mailed
CLOSED_CANCELLED = "cancelled"  # closed by hand in the panel
CLOSED_REFUSED = "toll_refused"  # the toll-fraud limits refuse calls to this number (issue #30)

OUTCOME_NAMES = {
    CONTACTED: "Соединены с пациентом", ALREADY_BOOKED: "Администратор: пациент уже записан (9)",
    CLINIC_NO_ANSWER: "Клиника не ответила", CLINIC_NO_KEY: "Администратор не нажал клавишу",
    CLINIC_HANGUP: "Администратор положил трубку до ответа пациента",
    PATIENT_NO_ANSWER: "Пациент не ответил", PATIENT_BUSY: "У пациента занято",
    PATIENT_SHORT: "Разговор 10 с или короче", PATIENT_FAILED: "Номер пациента недоступен",
    NOT_STARTED: "Asterisk не принял звонок", INTERRUPTED: "Прерван перезапуском", FAILED: "Сбой звонка",
}
CLOSED_NAMES = {
    CLOSED_CONTACTED: "Пациент соединён с клиникой", CLOSED_ALREADY_BOOKED: "Уже записан",
    CLOSED_OTHER_MEANS: "Связались иначе (запись или разговор)", CLOSED_GAVE_UP: "Не дозвонились, клинике отправлено письмо",
    CLOSED_CANCELLED: "Закрыта администратором", CLOSED_REFUSED: "Номер запрещён ограничениями звонков",
}


@dataclass(frozen=True)
class CallbackSettings:
    enabled: bool = True
    clinic_target: str = "queue"  # "queue": the branch's reception phones at once; or a desk phone "101"
    queue: str = "reception-ringall"
    caller_id: str = "74951110001"  # what the patient sees: the clinic's main number
    ring_clinic_seconds: int = 25
    ring_patient_seconds: int = 30
    key_wait_seconds: int = 8  # after the prompt, before it is said again
    prompt_repeats: int = 2
    retry_minutes: int = 5
    give_up_minutes: int = 150
    sms_after: int = 3  # patient-side failures before the SMS (once per request)
    max_concurrent_calls: int = 2
    opens: str = "09:00"  # every weekday unless the day has its own hours
    closes: str = "21:00"
    closed_days: str = ""  # ISO weekdays the branch is closed, e.g. "7" (Sunday)
    # hours per weekday, Monday to Sunday (overrides the three above when set), e.g.
    # "09:00-21:00,09:00-21:00,09:00-21:00,09:00-21:00,09:00-21:00,10:00-16:00,-"
    week: str = ""
    emails: str = ""  # the clinic's responsible staff, comma separated
    mail_from: str = ""  # the branch's own sender address (empty: the server's [mail] sender)
    clinic_phone: str = "+7 495 111-00-01"  # said in the SMS

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CallbackSettings:
        """Tolerant: unknown keys are ignored, values of the wrong type keep the default."""
        values = tolerant_values(cls, data, int_max=10_000, str_max=300)
        if parse_hhmm(str(values.get("opens", cls.opens))) is None:
            values.pop("opens")
        if parse_hhmm(str(values.get("closes", cls.closes))) is None:
            values.pop("closes")
        if values.get("week") and parse_week(values["week"]) is None:
            values.pop("week")
        return cls(**values)

    @property
    def hours(self) -> OpeningHours:
        week = parse_week(self.week) if self.week else None
        if week is not None:
            return week
        closed = {int(d) for d in self.closed_days.replace(",", " ").split() if d.isdigit()}
        o, c = parse_hhmm(self.opens) or time(9), parse_hhmm(self.closes) or time(21)
        return OpeningHours(tuple((d, o, c) for d in range(1, 8) if d not in closed))


def parse_hhmm(text: str) -> time | None:
    try:
        h, m = text.strip().split(":")
        return time(int(h), int(m))
    except (ValueError, AttributeError):
        return None


# --- the >10 s rule and the sides -----------------------------------------------------------
def contacted(talk_seconds: float) -> bool:
    """Seed 003: «разговор должен длиться больше 10 секунд»."""
    return talk_seconds > CONTACT_MIN_TALK


def leg_of(outcome: str) -> str:
    """Where an attempt failed: ``clinic`` (nobody, or nobody ready, at the clinic), ``patient``,
    or "" for an attempt that closes the request."""
    if outcome in _PATIENT_SIDE:
        return PATIENT
    if outcome in _CLINIC_SIDE:
        return CLINIC
    return ""


# --- opening hours --------------------------------------------------------------------------
@dataclass(frozen=True)
class OpeningHours:
    """Per ISO weekday (1 Monday .. 7 Sunday) the opening and closing time; a day not listed is
    closed."""

    days: tuple[tuple[int, time, time], ...] = tuple((d, time(9), time(21)) for d in range(1, 8))

    def of(self, weekday: int) -> tuple[time, time] | None:
        return next(((o, c) for d, o, c in self.days if d == weekday), None)

    def is_open(self, ts: float, tz: ZoneInfo) -> bool:
        local = datetime.fromtimestamp(ts, tz)
        hours = self.of(local.isoweekday())
        return hours is not None and hours[0] <= local.time() < hours[1]


def opening_at(ts: float, hours: OpeningHours, tz: ZoneInfo) -> float:
    """``ts`` itself when the branch is open then, else its next opening (seed 003: «в 9 утра
    или в час открытия клиники»). A branch closed every day never opens: +inf."""
    if hours.is_open(ts, tz):
        return ts
    day = datetime.fromtimestamp(ts, tz).date()
    for i in range(8):
        d = day + timedelta(days=i)
        today = hours.of(d.isoweekday())
        if today is None:
            continue
        opening = datetime.combine(d, today[0], tz).timestamp()
        if opening >= ts:
            return opening
    return float("inf")


def parse_week(text: str) -> OpeningHours | None:
    """``"09:00-21:00,09:00-21:00,09:00-21:00,09:00-21:00,09:00-21:00,10:00-16:00,-"``: Monday to
    Sunday, ``-`` (or empty) for a closed day. None when it does not read."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 7:
        return None
    days = []
    for weekday, part in enumerate(parts, start=1):
        if part in ("", "-"):
            continue
        opens, _, closes = part.partition("-")
        o, c = parse_hhmm(opens), parse_hhmm(closes)
        if o is None or c is None or c <= o:
            return None
        days.append((weekday, o, c))
    return OpeningHours(tuple(days))


# --- before and after an attempt ------------------------------------------------------------
@dataclass(frozen=True)
class Go:
    pass


@dataclass(frozen=True)
class WaitUntil:
    at: float
    reason: str = ""


@dataclass(frozen=True)
class Close:
    outcome: str  # CLOSED_*
    reason: str = ""


@dataclass(frozen=True)
class GiveUp:
    """Stop calling and e-mail the clinic «Заявка с {источник} — перезвоните пациенту»."""

    reason: str = ""


@dataclass(frozen=True)
class SendSms:
    pass


Step = Go | WaitUntil | Close | GiveUp | SendSms


@dataclass(frozen=True)
class RequestFacts:
    created_ts: float
    first_try_ts: float | None = None
    patient_failures: int = 0  # attempts that failed on the patient's side
    sms_sent: bool = False
    booked_since: bool = False  # an appointment for the patient (any of their numbers, a ward) made after the request
    talked_since: bool = False  # an answered call with the number either way after the request (not the robot's own)
    admins_free: bool = True  # somebody at the clinic is not on a call


def working_deadline(start: float, minutes: float, hours: OpeningHours, tz: ZoneInfo) -> float:
    """When ``minutes`` of the branch's open time have passed since ``start``: seed 003's
    «в течение 2,5 часов» counts the clinic's hours, so a request first tried an hour before
    closing has its other 1.5 hours after the next opening."""
    left, t = minutes * 60, start
    for _ in range(366):  # a day of open time a turn; a branch never open: +inf at once
        t = opening_at(t, hours, tz)
        if t == float("inf"):
            return t
        local = datetime.fromtimestamp(t, tz)
        today = hours.of(local.isoweekday())
        assert today is not None  # open at t
        closing = datetime.combine(local.date(), today[1], tz).timestamp()
        if closing - t >= left:
            return t + left
        left, t = left - (closing - t), closing
    return t


def period_words(minutes: int) -> str:
    """The configured period as the texts say it: «2,5 часа», «5 минут», «1 час», «3 часа»."""
    def plural(n: int, one: str, few: str, many: str) -> str:
        return one if n % 10 == 1 and n % 100 != 11 else few if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14 else many
    if minutes % 60 == 0:
        return f"{minutes // 60} {plural(minutes // 60, 'час', 'часа', 'часов')}"
    if minutes % 30 == 0:
        return f"{minutes // 60},5 часа"
    return f"{minutes} {plural(minutes, 'минута', 'минуты', 'минут')}"


def deadline(r: RequestFacts, s: CallbackSettings, tz: ZoneInfo) -> float | None:
    """The robot goes on for ``give_up_minutes`` (2.5 h) of open time from its first attempt."""
    return None if r.first_try_ts is None else working_deadline(r.first_try_ts, s.give_up_minutes, s.hours, tz)


def before_attempt(r: RequestFacts, s: CallbackSettings, now: float, tz: ZoneInfo) -> Step:
    """Decide whether to call now. The seed's flaw fixed: a request whose patient has booked or
    talked with the clinic since it came in is closed without ringing the administrator."""
    if r.booked_since:
        return Close(CLOSED_OTHER_MEANS, "Пациент записан после заявки")
    if r.talked_since:
        return Close(CLOSED_OTHER_MEANS, "Был разговор с пациентом после заявки")
    end = deadline(r, s, tz)
    if end is not None and now >= end:
        return GiveUp(f"{period_words(s.give_up_minutes)} без соединения")
    opening = opening_at(now, s.hours, tz)
    if opening > now:
        if end is not None and opening >= end:  # its open time ran out at the closing
            return GiveUp(f"{period_words(s.give_up_minutes)} без соединения")
        return WaitUntil(opening, "Нерабочее время")
    if not r.admins_free:
        return WaitUntil(now + BUSY_WAIT, "Все администраторы заняты")
    return Go()


def after_attempt(outcome: str, r: RequestFacts, s: CallbackSettings, now: float, tz: ZoneInfo,
                  started: float | None = None) -> list[Step]:
    """The one retry policy. ``r`` holds the facts with this attempt counted (first_try_ts set,
    patient_failures including it); ``started``: when this attempt began (seed 003: «каждые
    5 минут» — the next one is due 5 minutes after it began, not after it ended)."""
    if outcome == CONTACTED:
        return [Close(CLOSED_CONTACTED)]
    if outcome == ALREADY_BOOKED:
        return [Close(CLOSED_ALREADY_BOOKED, "Администратор нажал 9")]
    steps: list[Step] = []
    if leg_of(outcome) == PATIENT and r.patient_failures >= max(1, s.sms_after) and not r.sms_sent:
        steps.append(SendSms())
    at = max(now, (now if started is None else started) + max(1, s.retry_minutes) * 60)
    end = deadline(r, s, tz)
    at = opening_at(at, s.hours, tz)
    if end is not None and at > end:
        return [*steps, GiveUp(f"{period_words(s.give_up_minutes)} без соединения")]
    return [*steps, WaitUntil(at, OUTCOME_NAMES.get(outcome, outcome))]


# --- what a request is, for people ----------------------------------------------------------
def request_status(state: str, created: date, today: date) -> str:
    """«актуальная» | «закрыта» | «просрочена»: an open request is current for 7 full days,
    today included (made on the 1st: current through the 7th, overdue on the 8th)."""
    if state == "closed":
        return "закрыта"
    return "просрочена" if (today - created).days >= EXPIRES_DAYS else "актуальная"


def joins(open_created_ts: float, now: float) -> bool:
    """A request of the same number and source joins an open one made within 24 h."""
    return 0 <= now - open_created_ts <= JOIN_WINDOW


def free_lines(total: int, mine: int, others: int, others_waiting: bool) -> int:
    """Robot lines shared with the confirmation robot: alone, a robot takes every free line;
    while the other robot has calls waiting, each keeps to half the lines (rounded up), so
    neither starves the other."""
    total = max(1, total)
    cap = total if not others_waiting else max(1, (total + 1) // 2)
    return max(0, min(cap - mine, total - mine - others))


def letters_unaddressed(s: CallbackSettings) -> bool:
    """Seed 003 writes to «почту ответственных сотрудников клиники» when a request was not
    reached and after a talk («Не надо перезванивать»); with the robot on and no address given
    neither letter is ever written: the panel warns (the list is empty by default)."""
    return s.enabled and not s.emails.strip()


# --- what is said and written ---------------------------------------------------------------
def admin_prompt(source: str) -> str:
    return (f"Заявка на запись с {source}. Нажмите любую клавишу, чтобы соединиться с пациентом. "
            "Если пациент уже записан, нажмите 9.")


def details(source: str, doctor: str, service: str, connecting: str = "Соединяю с пациентом.") -> list[str]:
    """What the administrator hears after the key (seed 003: «Когда администратор нажимает на
    кнопку, робот ему проговаривает детали заявки пациента: «Заявка на запись с НаПоправку»;
    «Запись к врачу — …»; «Запись на услугу — …»; «Соединяю с пациентом»»)."""
    out = [f"Заявка на запись с {source}."]
    if doctor.strip():
        out.append(f"Запись к врачу — {doctor.strip()}.")
    if service.strip():
        out.append(f"Запись на услугу — {service.strip()}.")
    return [*out, connecting]


def sms_text(source: str, clinic_phone: str) -> str:
    return (f"Клиника не смогла до вас дозвониться по заявке с сайта {source}. "
            f"Пожалуйста, перезвоните по номеру: {clinic_phone}")


def give_up_subject(source: str) -> str:
    return f"Заявка с {source} — перезвоните пациенту"


def contacted_subject(source: str) -> str:
    return f"Заявка с {source} — Не надо перезванивать"

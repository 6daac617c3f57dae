"""The clinic's queues set up in the panel (issue #29): how they ring their phones, how long a
caller waits, and what happens when the wait runs out. Pure; Asterisk names each ``queue-<id>``
(never what a user typed). The demo's two queues are the shipped queues.conf's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crm.rules.telephony import QUEUE_NAMES, TelephonyError, form_int

# Asterisk's strategies that make sense at a reception desk
STRATEGIES = {"ringall": "все телефоны сразу", "linear": "по очереди, всегда с первого",
              "rrmemory": "по кругу, со следующего после последнего", "leastrecent": "кто дольше не говорил",
              "fewestcalls": "у кого меньше звонков", "random": "случайно"}
HANG_UP, CALLBACK = "hangup", "callback"
TIMEOUT_ACTIONS = {HANG_UP: "завершить звонок", CALLBACK: "заявка на обратный звонок (робот перезвонит)"}
QUEUE_PREFIX = "queue-"


@dataclass(frozen=True, slots=True)
class ClinicQueue:
    id: int
    title: str
    strategy: str = "ringall"
    ring_seconds: int = 15
    max_wait: int = 120
    on_timeout: str = HANG_UP  # hangup | callback | another queue's name

    @property
    def name(self) -> str:
        return f"{QUEUE_PREFIX}{self.id}"


def queue_choices(panel: list[ClinicQueue]) -> dict[str, str]:
    """Every queue a number or a phone may name: the shipped ones, then the panel's."""
    return {**QUEUE_NAMES, **{q.name: q.title for q in panel}}


def check_queue(form: Mapping[str, str], queue_id: int, known: Mapping[str, str]) -> ClinicQueue:
    """A queue from the panel's form (``known``: the queues there are, for the timeout's
    destination), or ``TelephonyError`` naming the field."""
    title = " ".join(str(form.get("title") or "").split())
    if not title or len(title) > 60:
        raise TelephonyError("title", "Название очереди: от 1 до 60 символов")
    strategy = str(form.get("strategy") or "ringall")
    if strategy not in STRATEGIES:
        raise TelephonyError("strategy", "Как звонить: выберите из списка")
    on_timeout = str(form.get("on_timeout") or HANG_UP)
    own = f"{QUEUE_PREFIX}{queue_id}"
    if on_timeout not in TIMEOUT_ACTIONS and (on_timeout not in known or on_timeout == own):
        raise TelephonyError("on_timeout", "Когда ожидание кончилось: завершить, заявка или другая очередь")
    return ClinicQueue(queue_id, title, strategy, form_int(form, "ring_seconds", 15, 5, 120, "Звонить телефону, с"),
                       form_int(form, "max_wait", 120, 10, 3600, "Ожидание в очереди, с"), on_timeout)

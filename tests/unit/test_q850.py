"""One Q.850 table for the tracker and the robot (pbx.calls.q850)."""

from __future__ import annotations

import pytest

from crm.rules import call_records as records
from pbx.calls import q850


def test_outcomes_are_the_trackers_words() -> None:
    assert (q850.BUSY, q850.NO_ANSWER, q850.ANSWERED_ELSEWHERE) == (
        records.BUSY, records.NO_ANSWER, records.ANSWERED_ELSEWHERE)
    assert {q850.leg_outcome(c, rang) for c in [*q850.CAUSES, 999] for rang in (True, False)} <= {
        records.BUSY, records.NO_ANSWER, records.ANSWERED_ELSEWHERE, records.FAILED}


@pytest.mark.parametrize(("cause", "rang", "outcome"), [
    (17, True, "busy"), (17, False, "busy"),
    (26, True, "answered_elsewhere"),
    (20, False, "failed"), (21, False, "failed"), (3, False, "failed"), (34, False, "failed"),
    (20, True, "no_answer"), (21, True, "no_answer"),  # it rang: a desk phone declined or dropped
    (16, True, "no_answer"), (19, True, "no_answer"), (0, True, "no_answer"), (999, False, "no_answer"),
])
def test_a_desk_phones_leg(cause: int, rang: bool, outcome: str) -> None:
    assert q850.leg_outcome(cause, rang) == outcome


@pytest.mark.parametrize(("cause", "outcome"), [
    (17, "busy"),
    (18, "no_answer"), (19, "no_answer"), (0, "no_answer"),
    (20, "no_answer"),  # switched off: maybe on later, retried
    (21, "no_answer"),  # declined: retried like an unanswered call
    (1, "failed"), (3, "failed"), (27, "failed"), (34, "failed"), (38, "failed"), (16, "failed"), (999, "failed"),
])
def test_a_robot_call_never_answered(cause: int, outcome: str) -> None:
    assert q850.robot_outcome(cause) == outcome


def test_one_meaning_per_cause() -> None:
    assert all(q850.meaning(c) == m for c, m in q850.CAUSES.items())
    assert q850.meaning(12345) == q850.UNKNOWN

"""One call classification for the tracker and the CDR backfill (crm.rules.call_records)."""

from __future__ import annotations

import pytest

from crm.rules.call_records import call_type, leg_missed


@pytest.mark.parametrize(("direction", "answered", "dialled", "kind"), [
    ("incoming", True, True, "incoming"), ("incoming", False, True, "missed"),
    ("outgoing", True, True, "outgoing"), ("outgoing", False, True, "outgoing_unanswered"),
    ("outgoing", False, False, "outgoing_not_connected"),
    ("internal", True, True, "internal"), ("internal", False, True, "internal"),
])
def test_call_type(direction: str, answered: bool, dialled: bool, kind: str) -> None:
    assert call_type(direction, answered=answered, patient_dialled=dialled) == kind


def test_who_missed_a_call() -> None:
    """Seed 000: nobody answered -> every phone that rang missed it; a busy or unreachable
    phone did not ring, the operator's trunk is nobody, an answered call is nobody's miss."""
    assert leg_missed("missed", False, "no_answer")
    assert not leg_missed("missed", False, "busy") and not leg_missed("missed", False, "failed")
    assert not leg_missed("missed", True, "no_answer")
    assert not leg_missed("incoming", False, "no_answer")
    assert not leg_missed("incoming", False, "answered_elsewhere")

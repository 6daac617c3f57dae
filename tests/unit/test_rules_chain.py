"""crm/rules/chain.py: which branch's requests and desk phones are a chain box's."""

from __future__ import annotations

from crm.rules.chain import box_rings, box_takes


def test_a_chain_box_takes_its_branches_and_the_clinics_requests() -> None:
    assert box_takes(2, ()) and box_takes(None, ()) and box_takes(7, ())  # one box: all
    assert box_takes(2, (2, 3)) and box_takes(3, (2, 3)) and box_takes(None, (2,))
    assert not box_takes(1, (2, 3))


def test_a_chain_box_rings_only_its_branches_phones() -> None:
    assert box_rings(1, ()) and box_rings(None, ())
    assert box_rings(2, (2,)) and not box_rings(1, (2,))
    assert not box_rings(None, (2,))  # a phone of no branch may be on any box of a chain

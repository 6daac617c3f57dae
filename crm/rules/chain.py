"""A clinic chain's boxes: which branch's work a box does. Each box (one Asterisk and its
clinic-pbx process) carries the desk phones of the branches in its ``[asterisk] branches``;
the table of desk phones and the callback requests are the chain's, shared."""

from __future__ import annotations


def box_takes(request_branch: int | None, box_branches: tuple[int, ...]) -> bool:
    """A callback request this box's robot calls back: its branches' and the clinic's (of no
    branch); a box with no list (one clinic) takes them all."""
    return not box_branches or request_branch is None or request_branch in box_branches


def box_rings(phone_branch: int | None, box_branches: tuple[int, ...]) -> bool:
    """A desk phone on this box's Asterisk, which it can ring or dial from: one of its
    branches' (a phone of no branch only when the box has no list: in a chain it may be on any
    box)."""
    return not box_branches or phone_branch in box_branches

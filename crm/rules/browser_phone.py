"""The phone in the browser (issue #34): which number a user's browser endpoint gets.

A user who works in the browser gets an endpoint of their own, a number colleagues can dial
and transfer to like any desk phone: the lowest free one of 1900-1999 (the panel refuses these
for desk phones), kept for that user from then on."""

from __future__ import annotations

import re
from collections.abc import Collection

FIRST, LAST = 1900, 1999
CHOICE = "browser"  # the shift question's value for «Телефон в браузере»


def is_browser_extension(extension: str) -> bool:
    return extension.isdigit() and FIRST <= int(extension) <= LAST


def next_extension(used: Collection[str]) -> str | None:
    """The lowest number of the range no phone has; None when all 100 are taken."""
    return next((str(n) for n in range(FIRST, LAST + 1) if str(n) not in used), None)


_DIGEST_USER = re.compile(r'^(?:proxy-)?authorization\s*:\s*digest\s[^\r\n]*?\busername\s*=\s*"?([^",\r\n]*)',
                          re.IGNORECASE | re.MULTILINE)


def frame_speaks_for(frame: str, extension: str) -> bool:
    """A SIP frame the browser sends authenticates as its own phone only: the relay is behind
    the panel's login, but a logged-in user must not try passwords of other phones through it
    (Asterisk sees the relay's loopback address, which the scanner ban never bans)."""
    return all(user == extension for user in _DIGEST_USER.findall(frame))

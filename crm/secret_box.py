"""Secrets the server must read back (a desk phone's SIP password, for its provisioning file),
sealed with the installation's key (``asterisk.provisioning_key`` in ``secrets.json``, mode
0600, never in the database): a copy of the database alone gives no password."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("a secret box needs the installation's key")
        raw = hashlib.sha256(f"clinic-pbx provisioning:{key}".encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(raw))

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open(self, sealed: str) -> str | None:
        """The text, or None when it was sealed with another key (or is no sealed text)."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, ValueError, UnicodeError):
            return None

"""Sending the mail outbox's letters over SMTP (aiosmtplib: STARTTLS, SSL or plain, with a
login when one is set). The outbox (``crm.mail``) keeps what is to be sent and retries."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from pbx.settings import MailSettings

log = logging.getLogger(__name__)


class Mailer(Protocol):
    configured: bool

    async def send(self, to: list[str], subject: str, body: str, sender: str = "") -> str:
        """"" when the server took the letter, else why not."""
        ...


class SmtpMailer:
    def __init__(self, settings: MailSettings) -> None:
        self.s = settings
        self.configured = bool(settings.host) or settings.demo

    async def send(self, to: list[str], subject: str, body: str, sender: str = "") -> str:
        if self.s.demo and not self.s.host:
            log.info("mail (demo, not sent) to %s: %s", ",".join(to), subject)
            return ""
        if not self.s.host:
            return "SMTP не настроен"
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender or self.s.sender, ", ".join(to), subject
        msg.set_content(body)
        try:
            await aiosmtplib.send(
                msg, hostname=self.s.host, port=self.s.port, username=self.s.user or None,
                password=self.s.password or None, use_tls=self.s.security == "ssl",
                start_tls=True if self.s.security == "starttls" else False, timeout=self.s.timeout,
                validate_certs=self.s.verify_tls)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            log.warning("mail to %s not sent: %s", ",".join(to), exc)
            return f"{type(exc).__name__}: {exc}"[:300]
        return ""

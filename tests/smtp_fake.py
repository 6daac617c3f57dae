"""A real SMTP server for tests (aiosmtpd on loopback) that keeps the letters it receives."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

from aiosmtpd.controller import Controller


class Inbox:
    def __init__(self) -> None:
        self.letters: list[dict[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        msg = message_from_bytes(envelope.content)
        self.letters.append({"from": str(msg["From"]), "to": ",".join(envelope.rcpt_tos),
                             "subject": str(make_header(decode_header(msg["Subject"]))),
                             "body": msg.get_payload(decode=True).decode(),
                             "authenticated": str(session.authenticated)})
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(inbox: Inbox, port: int, **kw: Any) -> Controller:
    """Start an SMTP server on 127.0.0.1:port (``kw``: TLS, authentication); stop() it after."""
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kw)
    controller.start()
    return controller

"""The clinic's letters over SMTP against a real aiosmtpd server: STARTTLS with a login, implicit
SSL, a plain server, a refused login and a server that is not there (retried, then failed), and
the sender of the branch."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crm import mail
from crm.db import Database
from pbx.outbound.mailer import SmtpMailer
from pbx.settings import MailSettings
from tests.smtp_fake import Inbox, free_port, serve


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"robot" and data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1 (the test's SMTP server)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return ctx


async def test_starttls_with_a_login(tls: ssl.SSLContext) -> None:
    inbox, port = Inbox(), free_port()
    server = serve(inbox, port, tls_context=tls, require_starttls=True, authenticator=authenticator,
                   auth_required=True, auth_require_tls=True)
    try:
        mailer = SmtpMailer(MailSettings(host="127.0.0.1", port=port, security="starttls", user="robot",
                                         password="s3cret", sender="clinic@example.ru", verify_tls=False))
        assert await mailer.send(["a@clinic.ru", "b@clinic.ru"], "Заявка с НаПоправку — Не надо перезванивать",
                                 "Текст письма", sender="filial@example.ru") == ""
        assert inbox.letters[0]["from"] == "filial@example.ru" and inbox.letters[0]["to"] == "a@clinic.ru,b@clinic.ru"
        assert inbox.letters[0]["subject"].endswith("Не надо перезванивать") and inbox.letters[0]["authenticated"] == "True"
        wrong = SmtpMailer(MailSettings(host="127.0.0.1", port=port, security="starttls", user="robot",
                                        password="wrong", verify_tls=False))
        assert "SMTPAuthenticationError" in await wrong.send(["a@clinic.ru"], "x", "y")
        unchecked = SmtpMailer(MailSettings(host="127.0.0.1", port=port, security="starttls", user="robot",
                                            password="s3cret"))  # verify_tls on: a self-signed certificate is refused
        assert await unchecked.send(["a@clinic.ru"], "x", "y") != ""
        plain = SmtpMailer(MailSettings(host="127.0.0.1", port=port, security="none", user="robot", password="s3cret"))
        assert await plain.send(["a@clinic.ru"], "x", "y") != ""  # the server demands STARTTLS first
        assert len(inbox.letters) == 1
    finally:
        server.stop()


async def test_implicit_ssl(tls: ssl.SSLContext) -> None:
    inbox, port = Inbox(), free_port()
    server = serve(inbox, port, ssl_context=tls)
    try:
        mailer = SmtpMailer(MailSettings(host="127.0.0.1", port=port, security="ssl", verify_tls=False))
        assert await mailer.send(["a@clinic.ru"], "Проверка", "Текст") == ""
        assert inbox.letters[0]["from"] == "clinic-pbx@localhost"
    finally:
        server.stop()


async def test_the_outbox_retries_then_fails(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        async with db.transaction() as tx:
            await mail.enqueue(tx, "k1", None, ("a@clinic.ru",), "Тема", "Текст", 100.0, "filial@example.ru")
            await mail.enqueue(tx, "k1", None, ("a@clinic.ru",), "Тема", "Текст", 100.0)  # once per key
        mailer = SmtpMailer(MailSettings(host="127.0.0.1", port=free_port(), security="none", timeout=2))
        now = 100.0
        for attempt in range(1, 6):
            letters = await mail.claim(db, now, 10)
            assert len(letters) == 1 and letters[0]["from_addr"] == "filial@example.ru"
            error = await mailer.send(letters[0]["to_addrs"].split(","), letters[0]["subject"], letters[0]["body"])
            assert error  # nobody listens there
            await mail.result(db, letters[0], error, now)
            now += 60 * 2 ** (attempt - 1)  # 1, 2, 4, 8 minutes apart
        row = await db.fetchone("SELECT state, attempts FROM mail_outbox")
        assert tuple(row) == ("failed", 5) and await mail.claim(db, now + 10_000, 10) == []
    finally:
        await db.close()

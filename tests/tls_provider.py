"""A SIP provider over TLS for the tests (SIPp here has no TLS): a test CA whose certificate the
test Asterisk trusts (``asterisk.tls_extra_ca``), a certificate for the provider's address
signed by it, and a registrar that answers REGISTER and OPTIONS with 200 OK and keeps what it
received. Enough to show that a provider set up with TLS registers over TLS, its certificate
checked."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TLS_PROVIDER_IP = "127.0.0.6"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_test_ca(folder: Path, address: str = TLS_PROVIDER_IP) -> tuple[Path, Path, Path]:
    """(CA certificate, provider certificate, provider key), made once in ``folder``."""
    ca_path, cert_path, key_path = folder / "test-ca.crt", folder / "provider.crt", folder / "provider.key"
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        return ca_path, cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("clinic-pbx test CA")).issuer_name(_name("clinic-pbx test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(address)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


class TlsRegistrar:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self, cert: Path, key: Path, host: str) -> int:
        """Listens on a free port of ``host``; returns it."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server = await asyncio.start_server(self._client, host, 0, ssl=context)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("utf-8", "replace")
                length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                               if line.lower().startswith(("content-length:", "l:"))), 0)
                if length:
                    await reader.readexactly(length)
                self.requests.append(head)
                writer.write(self._answer(head).encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    @staticmethod
    def _answer(head: str) -> str:
        lines = head.split("\r\n")
        keep = [ln for ln in lines[1:] if ln.split(":", 1)[0].strip().lower() in ("via", "v", "from", "f", "call-id", "i",
                                                                              "cseq")]
        to = next((ln for ln in lines if ln.lower().startswith(("to:", "t:"))), "To: <sip:x@x>")
        if ";tag=" not in to:
            to += ";tag=tls-provider"
        extra = []
        if lines[0].startswith("REGISTER"):
            contact = next((ln for ln in lines if ln.lower().startswith(("contact:", "m:"))), "")
            extra = [contact.split(";expires")[0] + ";expires=300", "Expires: 300"] if contact else []
        return "\r\n".join(["SIP/2.0 200 OK", *keep, to, *extra, "Content-Length: 0", "", ""])


async def tls_register(host: str, port: int, extension: str, password: str, ca_file: Path) -> list[str]:
    """A desk phone registering over TLS with digest auth, the box's certificate checked against
    ``ca_file``: the responses' first lines (401 then 200 when all is well)."""
    import re
    import secrets

    from tests.sip_phone import digest_authorization

    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False  # the box's certificate names its address, checked by the chain
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    local = writer.get_extra_info("sockname")
    uri = f"sip:{host}:{port};transport=tls"
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    seen: list[str] = []

    def request(cseq: int, auth: str = "") -> bytes:
        lines = [f"REGISTER {uri} SIP/2.0", f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch=z9hG4bK{secrets.token_hex(6)}",
                 f"From: <sip:{extension}@{host}>;tag={tag}", f"To: <sip:{extension}@{host}>", f"Call-ID: {call_id}",
                 f"CSeq: {cseq} REGISTER", f"Contact: <sip:{extension}@{local[0]}:{local[1]};transport=tls>",
                 "Expires: 60", "Max-Forwards: 70", *([auth] if auth else []), "Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    async def answer() -> str:
        """The next response (Asterisk's own requests meanwhile, a qualify OPTIONS, are skipped)."""
        while True:
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("utf-8", "replace")
            if head.startswith("SIP/2.0 "):
                seen.append(head.split("\r\n", 1)[0])
                return head

    try:
        writer.write(request(1))
        challenge = await answer()
        found = re.search(r'WWW-Authenticate: Digest (.+)', challenge)
        if found:
            writer.write(request(2, digest_authorization(extension, password, found.group(1), "REGISTER", uri)))
            await answer()
    finally:
        writer.close()
    return seen

"""The TLS transport's files (issue #29: providers that want SIP over TLS): the box's own
certificate, made once (a provider checks nothing of ours unless it asks for mutual TLS; a
self-signed one serves), and the CA list Asterisk checks a provider's certificate with: the
host's list plus ``asterisk.tls_extra_ca``. Written on every render; read by Asterisk at start."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST_CAS = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/pki/tls/certs/ca-bundle.crt"))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def self_signed(host: str, now: datetime.datetime) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for ``host``, valid ten years."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host or "clinic-pbx")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([_san(host or "clinic-pbx")]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_tls_files(etc: Path, host: str, extra_ca: str = "") -> Path:
    keys = etc / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (keys / "clinic-pbx.key").exists() or not (keys / "clinic-pbx.crt").exists():
        key_pem, cert_pem = self_signed(host, datetime.datetime.now(datetime.UTC))
        _write(keys / "clinic-pbx.key", key_pem)
        _write(keys / "clinic-pbx.crt", cert_pem)
    host_list = next((p for p in HOST_CAS if p.exists()), None)
    cas = host_list.read_bytes() if host_list is not None else b""
    if extra_ca:
        cas += b"\n" + Path(extra_ca).read_bytes()
    # Asterisk refuses an empty list: the box's own certificate stands in for a host without one
    _write(keys / "ca.crt", cas or (keys / "clinic-pbx.crt").read_bytes())
    return keys

"""Backups only the clinic can read (issue #30): each file encrypted to the clinic's public key
(X25519; the private key is kept away from the box, `clinic-pbx backup-key`), so a stolen backup
or a stolen box gives neither the patients' data nor the installation's secrets.

A file: ``CPBX-BACKUP-1`` + the sender's one-time public key (32 bytes), then chunks of at most
1 MiB, each ``length (4 bytes) + AES-256-GCM(chunk)`` with the chunk's number as its nonce and
"last" or "more" as its associated data (a cut file is refused, not restored short). The key is
HKDF-SHA256 of the X25519 secret, bound to both public keys."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"CPBX-BACKUP-1\n"
CHUNK = 1 << 20


class BackupKeyError(ValueError):
    pass


def new_key_pair() -> tuple[str, str]:
    """(private key to keep away from the box, public key for the settings), both base64."""
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode(), base64.b64encode(public).decode()


def _key(secret: bytes, sender: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=sender + recipient, info=b"clinic-pbx backup").derive(secret)


def _raw(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise BackupKeyError(f"{what}: 32 bytes in base64 expected")
    return raw


def encrypt_file(src: Path, dst: Path, public_key: str) -> None:
    recipient = _raw(public_key, "backup_public_key")
    one_time = X25519PrivateKey.generate()
    sender = one_time.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    aead = AESGCM(_key(one_time.exchange(X25519PublicKey.from_public_bytes(recipient)), sender, recipient))
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
        fout.write(MAGIC + sender)
        number, chunk = 0, fin.read(CHUNK)
        while True:
            following = fin.read(CHUNK)
            sealed = aead.encrypt(number.to_bytes(12, "big"), chunk, b"more" if following else b"last")
            fout.write(len(sealed).to_bytes(4, "big") + sealed)
            if not following:
                return
            number, chunk = number + 1, following


def decrypt_file(src: Path, dst: Path, private_key: str) -> None:
    private = X25519PrivateKey.from_private_bytes(_raw(private_key, "the backup key"))
    recipient = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
        if fin.read(len(MAGIC)) != MAGIC:
            raise BackupKeyError(f"{src.name}: not an encrypted clinic-pbx backup")
        sender = fin.read(32)
        aead = AESGCM(_key(private.exchange(X25519PublicKey.from_public_bytes(sender)), sender, recipient))
        number = 0
        while True:
            head = fin.read(4)
            if len(head) < 4:
                raise BackupKeyError(f"{src.name}: cut short")
            sealed = fin.read(int.from_bytes(head, "big"))
            try:
                try:
                    fout.write(aead.decrypt(number.to_bytes(12, "big"), sealed, b"more"))
                except InvalidTag:
                    fout.write(aead.decrypt(number.to_bytes(12, "big"), sealed, b"last"))
                    if fin.read(1):
                        raise BackupKeyError(f"{src.name}: data after its end") from None
                    return
            except InvalidTag:
                raise BackupKeyError(f"{src.name}: another key, or the file was changed") from None
            number += 1

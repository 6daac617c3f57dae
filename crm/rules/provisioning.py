"""Auto-provisioning files for the desk phones clinics buy most (issue #29): Yealink's ``.cfg``
and Grandstream's XML, made from the phone's account. Pure: the phone's facts in, the file's
text out. A phone asks for a file by its own name (its MAC address, or Yealink's common file);
the name only chooses the format. Every value is one the panel checked (digits, letters of a
label, a generated password, a host), and each format escapes it again."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

YEALINK, GRANDSTREAM = "yealink", "grandstream"
# Yealink asks for <mac>.cfg and y0000000000XX.cfg; Grandstream for cfg<mac>.xml (or cfg<mac>)
_YEALINK = re.compile(r"^(?:[0-9a-f]{12}|y0{9}[0-9a-f]{3})\.cfg$")
_GRANDSTREAM = re.compile(r"^cfg[0-9a-f]{12}(?:\.xml)?$")
TRANSPORT_CODES = {"udp": 0, "tcp": 1, "tls": 2}  # both families number them alike


@dataclass(frozen=True, slots=True)
class PhoneAccount:
    extension: str
    label: str
    password: str
    server: str  # the address the phones register to
    port: int = 5060
    transport: str = "udp"
    srtp: bool = False  # an encrypted phone: SIP over TLS (``transport`` "tls") and SRTP required


def family_of(file_name: str) -> str | None:
    name = file_name.lower()
    if _YEALINK.match(name):
        return YEALINK
    if _GRANDSTREAM.match(name):
        return GRANDSTREAM
    return None


def token_hash(token: str) -> str:
    """What the database keeps of a phone's provisioning URL (the URL itself is shown once)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _line(value: str) -> str:
    return "".join(ch for ch in value if ch.isprintable() and ch not in "\r\n")


def yealink_config(a: PhoneAccount) -> str:
    label = _line(a.label) or a.extension
    pairs = [
        ("account.1.enable", "1"), ("account.1.label", f"{a.extension} {label}" if a.label else a.extension),
        ("account.1.display_name", label), ("account.1.auth_name", a.extension),
        ("account.1.user_name", a.extension), ("account.1.password", a.password),
        ("account.1.sip_server.1.address", a.server), ("account.1.sip_server.1.port", str(a.port)),
        ("account.1.sip_server.1.transport_type", str(TRANSPORT_CODES.get(a.transport, 0))),
        ("account.1.sip_server.1.expires", "300"),
        # SRTP required (2) on an encrypted phone; the box's certificate is its own (self-signed)
        *([("account.1.srtp_encryption", "2"), ("security.trust_certificates", "0")] if a.srtp else []),
        # the pickup key (*8, the dialplan's) and the transfer key as the dialplan expects (blind)
        ("features.pickup.direct_pickup_enable", "1"), ("features.pickup.direct_pickup_code", "*8"),
        ("lang.gui", "Russian"),
    ]
    return "#!version:1.0.0.1\n" + "".join(f"{k} = {_line(v)}\n" for k, v in pairs)


def grandstream_config(a: PhoneAccount) -> str:
    label = _line(a.label) or a.extension
    values = [("P271", "1"), ("P270", label), ("P47", f"{a.server}:{a.port}"), ("P35", a.extension),
              ("P36", a.extension), ("P34", a.password), ("P3", label),
              ("P130", str(TRANSPORT_CODES.get(a.transport, 0)))]
    if a.srtp:
        values.append(("P183", "2"))  # SRTP: enabled and forced
    body = "".join(f"    <{k}>{escape(_line(v))}</{k}>\n" for k, v in values)
    return ('<?xml version="1.0" encoding="UTF-8" ?>\n<gs_provision version="1">\n  <config version="1">\n'
            f"{body}  </config>\n</gs_provision>\n")


def provisioning_file(file_name: str, a: PhoneAccount) -> tuple[str, str] | None:
    """(content type, text) for a file a phone asked for, or None: no such file here."""
    family = family_of(file_name)
    if family == YEALINK:
        return "text/plain", yealink_config(a)
    if family == GRANDSTREAM:
        return "application/xml", grandstream_config(a)
    return None

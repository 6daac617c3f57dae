"""Renders the shipped ``asterisk-config/`` templates into a runtime configuration folder.

The templates hold ``@@NAME@@`` placeholders for paths, loopback ports and generated secrets;
everything else is the clinic's real configuration, commented for the integrator.
"""

from __future__ import annotations

import re
from pathlib import Path

from pbx.asterisk.hold_music import write_hold_music
from pbx.asterisk.render import render_telephony
from pbx.asterisk.tls import write_tls_files
from pbx.settings import PROJECT_DIR, Settings

TEMPLATE_DIR = PROJECT_DIR / "asterisk-config"
_PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")
DESK_PHONES = ("101", "102", "103")


def phone_port(settings: Settings, extension: str) -> int:
    """The SIP port of a desk phone's static contact (101 -> base + 1, ...)."""
    return settings.asterisk.phone_port_base + int(extension) - 100


BOX_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,19}$")


def box_name(name: str) -> str:
    """A chain box's name as Asterisk's systemname: it starts every linkedid, so it stays short
    and plain (and is then safe inside a LIKE pattern)."""
    if not BOX_NAME.match(name):
        raise ValueError(f"asterisk.system_name {name!r}: a letter, then letters, digits or '-', up to 20")
    return name


_NAT_TOKEN = re.compile(r"^[A-Za-z0-9.:/-]{1,64}$")


def nat_lines(external: str, networks: str) -> str:
    """A transport's NAT lines: the public address in SIP and SDP, the networks left alone.
    Only plain addresses reach the config."""
    lines = []
    if external:
        if not _NAT_TOKEN.match(external):
            raise ValueError(f"asterisk.external_address {external!r}: an address or a host name")
        lines += [f"external_media_address = {external}", f"external_signaling_address = {external}"]
    for net in (n.strip() for n in networks.split(",") if n.strip()):
        if not _NAT_TOKEN.match(net):
            raise ValueError(f"asterisk.local_networks {net!r}: networks like 192.168.1.0/24")
        lines.append(f"local_net = {net}")
    return "\n".join(lines) if lines else "; not behind NAT (asterisk.external_address)"


def template_values(settings: Settings) -> dict[str, str]:
    a = settings.asterisk
    values = {
        "ETC_DIR": str(settings.asterisk_etc),
        "VAR_DIR": str(settings.asterisk_var),
        "BIND_HOST": a.host,
        "SIP_PORT": str(a.sip_port),
        "TLS_PORT": str(a.tls_port or a.sip_port + 1),
        "NAT_LINES": nat_lines(a.external_address, a.local_networks),
        "AMI_PORT": str(a.ami_port),
        "AMI_USER": a.ami_user,
        "AMI_SECRET": a.ami_secret,
        "HTTP_PORT": str(a.http_port),
        "ARI_USER": a.ari_user,
        "ARI_PASSWORD": a.ari_password,
        "ARI_APP": a.ari_app,
        "AGI_HOST": a.agi_host,
        "AGI_PORT": str(a.agi_port),
        "RTP_START": str(a.rtp_start),
        "RTP_END": str(a.rtp_end),
        "OPERATOR_IP": a.operator_ip,
        "OPERATOR_PORT": str(a.operator_port),
        "PHONE_PASSWORD": a.phone_password,
        "RING_SECONDS": str(a.ring_seconds),
        "QUEUE_MAX_WAIT": str(a.queue_max_wait),
        "TRANSFER_RING": str(max(5, min(int(a.transfer_ring_seconds), 120))),
        "TRANSFER_RETURN": "queue" if a.transfer_return == "queue" else "transferer",
        "OUTBOUND_LINE": "".join(ch for ch in a.outbound_line if ch.isdigit()),
        "RINGINUSE": "no" if a.one_call_per_phone else "yes",
        "PHONE_BUSY_AT": "1" if a.one_call_per_phone else "0",
        "SYSTEM_NAME_LINE": (f"systemname = {box_name(a.system_name)}" if a.system_name
                             else "; systemname: not set (one box; each box of a chain has its own)"),
    }
    for ext in DESK_PHONES:
        values[f"PHONE_CONTACT_{ext}"] = (
            f"contact = sip:{ext}@127.0.0.1:{phone_port(settings, ext)}"
            if a.static_phones
            else "; registers: no static contact"
        )
    return values


def render_text(text: str, values: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"unknown placeholder @@{name}@@")
        return values[name]

    return _PLACEHOLDER.sub(sub, text)


def render_config(settings: Settings, template_dir: Path = TEMPLATE_DIR) -> Path:
    """Write the rendered configuration into ``settings.asterisk_etc`` (mode 0600: secrets)."""
    out = settings.asterisk_etc
    out.mkdir(parents=True, exist_ok=True)
    values = template_values(settings)
    for src in sorted(template_dir.glob("*.conf")):
        dst = out / src.name
        dst.write_text(render_text(src.read_text(encoding="utf-8"), values), encoding="utf-8")
        dst.chmod(0o600)
    write_tls_files(out, settings.asterisk.host, settings.asterisk.tls_extra_ca)
    write_hold_music(settings.asterisk_var / "moh")
    # The panel's telephony is applied over these by the running server: the last applied
    # files stay (Asterisk boots with what last worked); a new box starts with no provider.
    for name, text in render_telephony([]).items():
        if not (out / name).exists():
            (out / name).write_text(text, encoding="utf-8")
            (out / name).chmod(0o600)
    return out

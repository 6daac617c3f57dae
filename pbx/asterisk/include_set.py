"""An existing Asterisk (``asterisk.embedded = false``, e.g. the clinic's FreePBX box): the files
it ``#include``s to run clinic-pbx's dialplan, queues, desk phones and providers (issue #29).
Pure: the rendered shipped files and the panel's telephony in, the include set out.

The box keeps what is its own: its transports, globals of its modules, [general] sections and
the demo clinic's trunk and phones are left out; an endpoint names no transport (PJSIP takes
the box's own for the address); our files include each other by absolute path (Asterisk reads a
relative ``#include`` from its own configuration folder)."""

from __future__ import annotations

import re
from pathlib import Path

from crm.rules.telephony import SHIPPED_PHONES
from pbx.asterisk.render import DIALPLAN_FILE, PJSIP_FILE, QUEUES_FILE

PREFIX = "clinic-pbx_"
# shipped file -> the sections the existing box must not get from us
_LEFT_OUT = {
    "pjsip.conf": {"global", "transport-udp", "transport-tcp", "transport-tls", "transport-ws", "operator",
                   "operator-identify", *SHIPPED_PHONES},
    "extensions.conf": {"general"},
    "queues.conf": {"general"},
    "manager.conf": {"general"},
    "ari.conf": {"general"},
}
_SECTION = re.compile(r"^\[([^\]]+)\]")
_INCLUDE = re.compile(r"^#(try)?include[ \t]+(\S+)[ \t]*$", re.M)
# our transports and our box's media address are not the existing box's
_OWN_BOX = re.compile(r"^(?:transport\s*=\s*transport-\w+|media_address\s*=.*|bind_rtp_to_media_address\s*=.*)$\n?",
                      re.M)
# where each file is included on the existing box (FreePBX's *_custom.conf are for this)
WHERE = {"pjsip.conf": "pjsip.conf (FreePBX: pjsip_custom.conf)",
         "extensions.conf": "extensions.conf (FreePBX: extensions_custom.conf)",
         "queues.conf": "queues.conf (FreePBX: queues_custom.conf)",
         "manager.conf": "manager.conf (FreePBX: manager_custom.conf)",
         "ari.conf": "ari.conf (FreePBX: ari_additional_custom.conf)"}


def without_sections(text: str, names: set[str]) -> str:
    """The text without the named sections (each ``[name]`` up to the next section)."""
    out, keep = [], True
    for line in text.splitlines(keepends=True):
        m = _SECTION.match(line)
        if m:
            keep = m.group(1) not in names
        if keep or line.startswith("#"):  # an include belongs to the file, not to a section
            out.append(line)
    return "".join(out)


def include_set(shipped: dict[str, str], telephony: dict[str, str], out_dir: Path) -> dict[str, str]:
    """File name in ``out_dir`` -> text: the shipped files' clinic parts and the panel's
    telephony, plus INCLUDE.txt, the lines to add on the existing box."""
    files: dict[str, str] = {}
    for name, left_out in _LEFT_OUT.items():
        text = without_sections(shipped[name], left_out)
        text = _INCLUDE.sub(lambda m: f"#{m.group(1) or ''}include {out_dir / m.group(2)}", text)
        files[PREFIX + name] = _OWN_BOX.sub("", text)
    for name in (PJSIP_FILE, DIALPLAN_FILE, QUEUES_FILE):
        files[name] = _OWN_BOX.sub("", telephony[name])
    how = ["; Add each line to the file named after it on the existing Asterisk, then:",
           ";   asterisk -rx 'core reload'",
           "; With asterisk.include_dir set to this folder the server keeps the panel's files here up to",
           "; date and reloads them over AMI, as it does for its own Asterisk (README).", ""]
    how += [f"#include {out_dir / (PREFIX + name)}    ; in {WHERE[name]}" for name in _LEFT_OUT]
    files["INCLUDE.txt"] = "\n".join(how) + "\n"
    return files

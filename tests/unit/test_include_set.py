"""#29: an existing Asterisk (a FreePBX box) includes clinic-pbx's files: the shipped dialplan,
queues and templates and the panel's telephony, without what is the box's own (transports,
[general], the demo's trunk and phones), included by absolute path."""

from __future__ import annotations

import re
from pathlib import Path

from crm.rules import telephony as rules
from pbx.asterisk.config import TEMPLATE_DIR, render_text, template_values
from pbx.asterisk.include_set import PREFIX, include_set, without_sections
from pbx.asterisk.render import PJSIP_FILE, Context, render_telephony
from pbx.settings import Settings, with_generated_secrets

GOOD = {"name": "Манго", "server": "sip.mango.ru", "login": "clinic1", "password": "Pa55-word"}


def _files(tmp_path: Path) -> dict[str, str]:
    settings = with_generated_secrets(Settings(state_dir=tmp_path / "state"))
    values = template_values(settings)
    shipped = {src.name: render_text(src.read_text(encoding="utf-8"), values) for src in TEMPLATE_DIR.glob("*.conf")}
    provider = rules.check_provider(GOOD, 1)
    phone = rules.DeskPhone("104", "Ресепшн 4", ("reception-ringall",), rules.md5_cred("104", "x"))
    telephony = render_telephony([provider], [], Context(own_transports=False), [phone])
    return include_set(shipped, telephony, tmp_path / "inc")


def _sections(text: str) -> set[str]:
    return set(re.findall(r"^\[([^\]]+)\]", text, re.M))


def test_the_box_keeps_its_own_transports_globals_and_has_no_demo(tmp_path: Path) -> None:
    files = _files(tmp_path)
    pjsip = files[PREFIX + "pjsip.conf"]
    assert {"endpoint-common", "desk-phone", "desk-phone-auth", "desk-phone-aor"} <= _sections(pjsip)
    assert not {"global", "transport-udp", "transport-tcp", "operator", "101", "102", "103"} & _sections(pjsip)
    for name, text in files.items():
        assert not re.search(r"^(transport|media_address|bind_rtp_to_media_address)\s*=", text, re.M), name
    assert "general" not in _sections(files[PREFIX + "extensions.conf"]) | _sections(files[PREFIX + "queues.conf"])
    assert {"from-operator", "from-phones", "clinic-outgoing", "globals"} <= _sections(files[PREFIX + "extensions.conf"])
    # the AMI and ARI users clinic-pbx logs in with, nothing of the box's [general]
    assert _sections(files[PREFIX + "manager.conf"]) == {"clinic-pbx"}
    assert _sections(files[PREFIX + "ari.conf"]) == {"clinic-pbx"}
    # the panel's telephony: the provider and the phone, no transport named
    assert {"trunk-1", "trunk-1-reg", "104"} <= _sections(files[PJSIP_FILE])


def test_our_files_include_each_other_by_absolute_path(tmp_path: Path) -> None:
    files = _files(tmp_path)
    inc = tmp_path / "inc"
    assert f"#tryinclude {inc / 'pjsip_clinic.conf'}\n" in files[PREFIX + "pjsip.conf"]
    assert f"#tryinclude {inc / 'extensions_clinic.conf'}\n" in files[PREFIX + "extensions.conf"]
    assert f"#tryinclude {inc / 'queues_clinic.conf'}\n" in files[PREFIX + "queues.conf"]
    how = files["INCLUDE.txt"]
    for name in ("pjsip", "extensions", "queues", "manager", "ari"):
        assert f"#include {inc / (PREFIX + name + '.conf')}" in how


def test_an_include_line_survives_a_left_out_section() -> None:
    text = "[keep]\na = 1\n[drop]\nb = 2\n#tryinclude x.conf\n[after]\nc = 3\n"
    assert without_sections(text, {"drop"}) == "[keep]\na = 1\n#tryinclude x.conf\n[after]\nc = 3\n"

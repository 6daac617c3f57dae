"""#37: the shipped module list (``autoload = no``) holds every module the dialplan and the
project use. Before, the desk phones' transfer key did nothing: res_pjsip_refer was installed
but never loaded, and nothing checked it. A missing module fails here."""

from __future__ import annotations

import re
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "asterisk-config"

# dialplan applications and functions -> the module that provides them ("" : Asterisk's core)
APPLICATIONS = {
    "AGI": "res_agi", "AMD": "app_amd", "Answer": "", "BridgeWait": "app_bridgewait", "Busy": "",
    "Congestion": "", "Dial": "app_dial", "Echo": "app_echo", "Exec": "app_exec", "Gosub": "app_stack", "GosubIf": "app_stack",
    "ExecIf": "app_exec", "Goto": "", "GotoIf": "", "GotoIfTime": "", "Hangup": "", "MixMonitor": "app_mixmonitor", "MSet": "", "NoOp": "",
    "Originate": "app_originate", "PauseQueueMember": "app_queue", "UnpauseQueueMember": "app_queue", "Pickup": "app_directed_pickup", "Playback": "app_playback",
    "Progress": "", "Queue": "app_queue", "Read": "app_read", "Record": "app_record", "Return": "app_stack",
    "Ringing": "", "SendDTMF": "app_senddtmf", "Set": "", "Stasis": "app_stasis", "UserEvent": "app_userevent",
    "Verbose": "app_verbose", "Wait": "",
}
FUNCTIONS = {
    "CALLERID": "func_callerid", "CDR": "func_cdr", "CHANNEL": "func_channel", "CUT": "func_cut",
    "DB": "func_db", "ENV": "func_env", "GLOBAL": "func_global", "IF": "func_logic", "LEN": "func_strings",
    "MATH": "func_math", "TIMEOUT": "func_timeout", "URIENCODE": "func_uri", "FILTER": "func_strings",
    "GROUP": "func_groupcount", "GROUP_COUNT": "func_groupcount", "PJSIP_HEADER": "res_pjsip_header_funcs",
    "DIALPLAN_EXISTS": "func_dialplan", "DB_EXISTS": "func_db", "DB_DELETE": "func_db",
}
# what the project asks of Asterisk beyond the dialplan (each with why)
FEATURES = {
    "res_pjsip_refer": "a desk phone's transfer key: REFER, and REFER with Replaces after a consultation",
    "app_stack": "Dial's b() pre-dial handler of a transfer to an outside number",
    "res_musiconhold": "music on hold when a phone puts the patient on hold",
    "app_queue": "the queues",
    "res_agi": "the FastAGI caller lookup",
    "res_ari": "the robots' ARI application",
    "res_stasis_playback": "the robots' prompts",
    "cdr_sqlite3_custom": "the CDR the CRM backfills from",
    "cdr_manager": "CDR events over AMI",
    "res_pjsip_outbound_authenticator_digest": "a provider that demands digest authentication",
    "res_pjsip_outbound_registration": "a provider that wants the clinic to REGISTER",
    "res_pjsip_acl": "SIP scanners' bans (pjsip_clinic.conf [clinic-bans], type = acl)",
    "format_wav": "the box's own music on hold and MixMonitor's recordings",
}


def loaded_modules() -> set[str]:
    text = (CONFIG / "modules.conf").read_text()
    return {m.group(1) for m in re.finditer(r"^\s*load\s*=>\s*(\w+)\.so", text, re.M)}


def dialplan_uses(text: str) -> tuple[set[str], set[str]]:
    """The applications and functions a dialplan calls."""
    apps, funcs = set(), set()
    for line in text.splitlines():
        m = re.match(r"\s*(exten|same)\s*=>\s*(.*)", line.split(";", 1)[0])
        if not m:
            continue
        parts = m.group(2).split(",", 2 if m.group(1) == "exten" else 1)
        step = parts[-1].strip()
        if name := re.match(r"([A-Za-z]+)", step):
            apps.add(name.group(1))
        funcs.update(re.findall(r"\$\{([A-Z_]+)\(", step))
        if re.search(r"\bb\([^)]*\^", step):  # Dial's pre-dial handler runs a Gosub
            apps.add("Gosub")
    return apps, funcs


def missing_modules(dialplan: str, loaded: set[str]) -> list[str]:
    apps, funcs = dialplan_uses(dialplan)
    out = [f"unknown application {a}: say which module provides it" for a in sorted(apps - APPLICATIONS.keys())]
    out += [f"unknown function {f}: say which module provides it" for f in sorted(funcs - FUNCTIONS.keys())]
    needed = {APPLICATIONS.get(a, "") for a in apps} | {FUNCTIONS.get(f, "") for f in funcs} | set(FEATURES)
    out += [f"{m}.so is not loaded" for m in sorted(needed - {""} - loaded)]
    return out


def test_every_module_the_dialplan_and_the_project_use_is_loaded() -> None:
    dialplan = (CONFIG / "extensions.conf").read_text()
    apps, funcs = dialplan_uses(dialplan)
    assert {"Dial", "Queue", "MixMonitor", "AGI", "Stasis", "Pickup"} <= apps and {"CUT", "IF"} <= funcs
    assert missing_modules(dialplan, loaded_modules()) == []


def test_the_rendered_providers_dialplan_has_its_modules_too() -> None:
    """What the panel's providers render (every option that adds a step) runs on the same list."""
    from crm.rules.telephony import check_number, check_provider
    from pbx.asterisk.render import DIALPLAN_FILE, render_telephony

    numbers = [check_number({"did": "74951234567", "hours": "пн-пт 09:00-18:00", "holidays": "31.12.2026",
                             "closed_message": "Закрыто", "closed_callback": "1", "closed_mobile": "79031112233"})]
    providers = [check_provider({"name": "a", "server": "sip.a.ru", "login": "l", "password": "p", "did_from": "To",
                                 "max_calls": "3", "outgoing": "1"}, 1),
                 check_provider({"name": "b", "server": "10.0.0.1", "auth": "ip", "did_from": "Diversion"}, 2),
                 check_provider({"name": "c", "server": "10.0.0.2", "auth": "ip"}, 3)]
    dialplan = render_telephony(providers, numbers)[DIALPLAN_FILE]
    apps, funcs = dialplan_uses(dialplan)
    assert {"GotoIf", "ExecIf", "Return", "GotoIfTime"} <= apps and {"PJSIP_HEADER", "GROUP_COUNT", "FILTER", "CUT"} <= funcs
    assert missing_modules(dialplan, loaded_modules()) == []


def test_the_check_sees_a_missing_module() -> None:
    loaded = loaded_modules() - {"res_pjsip_refer", "func_cut"}
    dialplan = "exten => s,1,Set(X=${CUT(A,/,2)})\n same => n,Frobnicate()\n"
    assert missing_modules(dialplan, loaded) == [
        "unknown application Frobnicate: say which module provides it", "func_cut.so is not loaded",
        "res_pjsip_refer.so is not loaded"]

"""The clinic's telephony data -> Asterisk configuration text (issue #29). Pure: providers and
clinic numbers in, the two files ``pjsip_clinic.conf`` and ``extensions_clinic.conf`` out; the shipped templates
include them. Section names are made of ids; every value went through ``crm.rules.telephony``
and is escaped again here, so nothing a user typed can open a section or a directive."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from crm.rules import hours
from crm.rules.queues import CALLBACK, HANG_UP, STRATEGIES, ClinicQueue, queue_choices
from crm.rules.telephony import (
    DID_IN_RURI,
    DID_IN_TO,
    QUEUE_NAMES,
    REGISTER,
    SIP_REALM,
    BranchOut,
    ClinicNumber,
    DeskPhone,
    Provider,
    escape_value,
    normalize_did,
    outgoing_provider,
    phone_label,
)

PJSIP_FILE, DIALPLAN_FILE, QUEUES_FILE = "pjsip_clinic.conf", "extensions_clinic.conf", "queues_clinic.conf"
LEGACY_TRUNK = "operator"  # the demo's provider, identified by address in the shipped pjsip.conf
HEADER = "; Rendered by clinic-pbx from «Настройки → Телефония»: edit there, not here.\n"


def _lines(section: str, pairs: list[tuple[str, str | int]], template: str = "") -> str:
    body = "".join(f"{k} = {escape_value(str(v))}\n" for k, v in pairs if v != "")
    return f"[{section}]{f'({template})' if template else ''}\n{body}\n"


def sip_uri(p: Provider, user: str = "") -> str:
    transport = f";transport={p.transport}" if p.transport in ("tcp", "tls") else ""
    return f"sip:{user + '@' if user else ''}{p.server}:{p.port}{transport}"


def _proxy(p: Provider) -> str:
    return f"sip:{p.outbound_proxy};lr" if p.outbound_proxy else ""


def provider_pjsip(p: Provider, own_transports: bool = True) -> str:
    """One provider's endpoint, aor, auth, registration and identify sections (on an existing
    Asterisk, ``own_transports`` False: no transport named, PJSIP takes the box's own)."""
    name, registers = p.endpoint, p.auth == REGISTER
    has_auth = bool(p.login and p.password)
    transport = f"transport-{p.transport}" if own_transports else ""
    text = f"; provider {p.id}\n"
    text += _lines(name, [
        ("transport", transport), ("context", f"from-{name}"), ("aors", name),
        ("disallow", "all"), ("allow", ",".join(p.codecs)), ("dtmf_mode", p.dtmf),
        ("outbound_auth", f"{name}-auth" if has_auth else ""),
        ("from_user", p.from_user or (p.login if registers else "")), ("from_domain", p.from_domain),
        ("outbound_proxy", _proxy(p)),
        # the patient's number may arrive in P-Asserted-Identity; patients never learn who took the call
        ("trust_id_inbound", "yes"), ("send_connected_line", "no"),
        # the caller ID (the branch's clinic number) also where from_user holds the login
        ("send_pai", "yes"),
    ], template="endpoint-common")
    text += _lines(name, [("type", "aor"), ("contact", sip_uri(p)), ("qualify_frequency", 60 if p.qualify else 0),
                          ("outbound_proxy", _proxy(p))])
    if has_auth:
        text += _lines(f"{name}-auth", [("type", "auth"), ("auth_type", "userpass"),
                                         ("username", p.auth_user or p.login), ("password", p.password)])
    if registers:
        text += _lines(f"{name}-reg", [
            ("type", "registration"), ("transport", transport), ("outbound_auth", f"{name}-auth"),
            ("server_uri", sip_uri(p)), ("client_uri", sip_uri(p, p.login)), ("contact_user", p.login),
            ("outbound_proxy", _proxy(p)), ("expiration", p.expiry), ("retry_interval", p.retry),
            # Asterisk's defaults stop trying for good after one refusal or ten timeouts: a
            # clinic's line must come back by itself once the provider fixes the account
            ("auth_rejection_permanent", "no"), ("forbidden_retry_interval", max(p.retry, 60)),
            ("fatal_retry_interval", max(p.retry, 60)), ("max_retries", 100000),
            ("max_random_initial_delay", 1),
            # incoming calls come back to our contact with this line's token: several accounts
            # on one provider's address stay apart
            ("line", "yes"), ("endpoint", name),
        ])
    matches = [p.server, *p.addresses] if not p.outbound_proxy else [p.server, p.outbound_proxy, *p.addresses]
    text += _lines(f"{name}-identify", [("type", "identify"), ("endpoint", name),
                                        ("match", ",".join(dict.fromkeys(matches)))])
    return text


def _number_steps(p: Provider) -> list[str]:
    """Dialplan steps that leave the dialled clinic number's digits in CLINIC_IN."""
    if p.did_from == DID_IN_RURI:
        return ["Set(CLINIC_H=${EXTEN})", "Goto(num)"]
    header = "To" if p.did_from == DID_IN_TO else p.did_from
    return [f"Set(CLINIC_H=${{PJSIP_HEADER(read,{header})}})",
            '''GotoIf($["${CLINIC_H}" : ".*sip:"]?uri:num)''']


def provider_dialplan(p: Provider) -> str:
    name = p.endpoint
    steps = _number_steps(p)
    text = f"[from-{name}]\n"
    text += f"exten => _[0-9a-zA-Z+*#]!,1,Set(__CLINIC_TRUNK={name})\n"
    if p.max_calls:
        text += f" same => n,Set(GROUP(clinic-trunks)={name})\n"
        text += f" same => n,GotoIf($[${{GROUP_COUNT({name}@clinic-trunks)}} > {p.max_calls}]?full)\n"
    for step in steps:
        text += f" same => n,{step}\n"
    text += " same => n(uri),Set(CLINIC_H=${CUT(CLINIC_H,@,1)})\n"
    text += " same => n,Set(CLINIC_H=${CUT(CLINIC_H,:,2)})\n"
    text += " same => n(num),Set(CLINIC_IN=${FILTER(0123456789,${CLINIC_H})})\n"
    # [from-operator] writes the number as the CRM stores it and finds its route; no number at
    # all: the main reception still answers (its catch-all)
    text += ' same => n,ExecIf($["${CLINIC_IN}" = ""]?Set(CLINIC_IN=0))\n'
    text += " same => n,Goto(from-operator,${CLINIC_IN},1)\n"
    if p.max_calls:
        text += " same => n(full),Hangup(34)\n"
    return text + "\n"


def _trunk_out(name: str, cap: int, fmt: str) -> str:
    """One provider's outgoing subroutine (reached from [clinic-trunk-out]): its cap and the
    number as it wants it in CLINIC_OUT_NUMBER."""
    text = f"[clinic-out-{name}]\nexten => s,1,Set(CLINIC_OUT_TRUNK={name})\n"
    if cap:
        text += f" same => n,Set(GROUP(clinic-trunks)={name})\n"
        # over the provider's cap a call is refused, except the emergency number
        text += (f' same => n,ExecIf($[${{GROUP_COUNT({name}@clinic-trunks)}} > {cap} & "${{ARG1}}" != "112"]'
                 "?Hangup(34))\n")
    # a Russian number as 7XXXXXXXXXX first (8…, +7…, 10 digits), then as the provider wants it
    text += " same => n,Set(CLINIC_OUT_NUMBER=${FILTER(0123456789,${ARG1})})\n"
    text += ' same => n,ExecIf($[${LEN(${CLINIC_OUT_NUMBER})} = 10]?Set(CLINIC_OUT_NUMBER=7${CLINIC_OUT_NUMBER}))\n'
    text += (' same => n,ExecIf($[${LEN(${CLINIC_OUT_NUMBER})} = 11 & "${CLINIC_OUT_NUMBER:0:1}" = "8"]'
             "?Set(CLINIC_OUT_NUMBER=7${CLINIC_OUT_NUMBER:1}))\n")
    russian = '$[${LEN(${CLINIC_OUT_NUMBER})} = 11 & "${CLINIC_OUT_NUMBER:0:1}" = "7"]'
    if fmt == "8":
        text += f" same => n,ExecIf({russian}?Set(CLINIC_OUT_NUMBER=8${{CLINIC_OUT_NUMBER:1}}))\n"
    elif fmt == "+7":
        text += f" same => n,ExecIf({russian}?Set(CLINIC_OUT_NUMBER=+${{CLINIC_OUT_NUMBER}}))\n"
    # short numbers (112, a provider's service codes) go as dialled
    text += ' same => n,ExecIf($[${LEN(${CLINIC_OUT_NUMBER})} < 10]?Set(CLINIC_OUT_NUMBER=${ARG1}))\n'
    return text + " same => n,Return()\n\n"


def outgoing_dialplan(providers: list[Provider], outs: tuple[BranchOut, ...] = (),
                      phone_branches: Mapping[str, int | None] | None = None) -> str:
    """Which endpoint outgoing calls leave by and the number as it wants it, as a subroutine
    the shipped dialplan calls with the dialled number (ARG1): CLINIC_OUT_TRUNK and
    CLINIC_OUT_NUMBER. A desk phone's branch may choose its own provider and caller ID:
    [clinic-line-out], which the shipped [clinic-outgoing] calls first, sets them for the
    phone's channel (CLINIC_BRANCH_TRUNK, CLINIC_LINE unless the call already chose one)."""
    out = outgoing_provider(providers)
    default = out.endpoint if out is not None else LEGACY_TRUNK
    text = "[clinic-trunk-out]\n"
    # may it go (crm.rules.toll over FastAGI: where to, how many at once, how many an hour)? The
    # emergency number does not ask; no answer (the server down) is a no
    text += 'exten => s,1,GotoIf($["${ARG1}" = "112"]?go)\n'
    text += " same => n,Set(GROUP(clinic-outgoing)=box)\n"
    text += " same => n,AGI(${AGI_URL}/outgoing_check,${ARG1},${GROUP_COUNT(box@clinic-outgoing)})\n"
    text += ' same => n,GotoIf($["${CLINIC_OUT_OK}" != "1"]?refused)\n'
    text += f' same => n(go),Set(CLINIC_OUT_TRUNK=${{IF($["${{CLINIC_BRANCH_TRUNK}}" != ""]?${{CLINIC_BRANCH_TRUNK}}:{default})}})\n'
    text += " same => n,Goto(clinic-out-${CLINIC_OUT_TRUNK},s,1)\n"
    text += " same => n(refused),Hangup(21)\n\n"
    text += _trunk_out(LEGACY_TRUNK, 0, "7")
    text += "".join(_trunk_out(p.endpoint, p.max_calls, p.dial_format) for p in providers if p.enabled)
    return text + line_out_dialplan(providers, outs, phone_branches or {})


def line_out_dialplan(providers: list[Provider], outs: tuple[BranchOut, ...],
                      phone_branches: Mapping[str, int | None]) -> str:
    text = "[clinic-line-out]\n"
    text += 'exten => s,1,GotoIf($["${CHANNEL(channeltype)}" != "PJSIP"]?done)\n'
    # "PJSIP/104-0000002a": the desk phone whose call this is
    text += " same => n,Set(CLINIC_PHONE=${CHANNEL(name)})\n same => n,Set(CLINIC_PHONE=${CUT(CLINIC_PHONE,/,2)})\n"
    text += " same => n,Set(CLINIC_PHONE=${CUT(CLINIC_PHONE,-,1)})\n"
    text += " same => n,GotoIf(${DIALPLAN_EXISTS(clinic-line-out,${CLINIC_PHONE},1)}?${CLINIC_PHONE},1)\n"
    text += " same => n(done),Return()\n"
    enabled = {p.id: p.endpoint for p in providers if p.enabled}
    by_branch = {o.branch: o for o in outs}
    for ext, branch in sorted(phone_branches.items()):
        o = by_branch.get(branch) if branch is not None else None
        trunk = enabled.get(o.provider) if o is not None and o.provider is not None else None
        line = normalize_did(o.line) if o is not None and o.line else ""
        if not (trunk or line) or not ext.isdigit():
            continue
        text += f"exten => {ext},1,NoOp(branch {int(branch or 0)})\n"
        if trunk:
            text += f" same => n,Set(CLINIC_BRANCH_TRUNK={trunk})\n"
        if line:
            text += f' same => n,ExecIf($["${{CLINIC_LINE}}" = ""]?Set(CLINIC_LINE={line}))\n'
        text += " same => n,Return()\n"
    return text + "\n"


@dataclass(frozen=True)
class Context:
    """What the render needs beyond the rows: the clinic's time zone and today (holidays are
    written for the coming year), and the prompt files the robots' TTS made of each message."""

    tz: str = "Europe/Moscow"
    today: date = date(2026, 1, 1)
    sounds: Mapping[str, str] = field(default_factory=dict)  # message text -> sound path (no suffix)
    queues: tuple[ClinicQueue, ...] = ()  # the panel's (the shipped ones are queues.conf's)
    outs: tuple[BranchOut, ...] = ()  # the branches' own outgoing provider and caller ID
    phone_branches: Mapping[str, int | None] = field(default_factory=dict)  # every desk phone's branch
    own_transports: bool = True  # False: an existing Asterisk with its own transports
    bans: tuple[str, ...] = ()  # SIP scanners' addresses, refused by a PJSIP ACL (#30)


def _route_steps(n: ClinicNumber, did: str, ctx: Context) -> list[str]:
    try:
        spans, days = hours.parse_hours(n.hours), hours.parse_holidays(n.holidays)
    except hours.HoursError:
        spans, days = (), ()  # checked when saved; a row broken since is always open, never closed
    steps = [f"Set(__CLINIC_DID={did})", f"Set(__CLINIC_QUEUE={n.queue})"]
    own = next((q for q in ctx.queues if q.name == n.queue), None)
    if own is not None:  # how long its callers wait (the shipped queues: QUEUE_MAX_WAIT)
        steps.append(f"Set(__CLINIC_QUEUE_WAIT={own.max_wait})")
    steps += hours.asterisk_steps(spans, days, ctx.tz, ctx.today, open_label="open", closed_label="closed")
    steps.append("(open)Goto(clinic-incoming,s,1)")
    if not spans:
        return steps
    sound = ctx.sounds.get(n.closed_message, "") if n.closed_message else ""
    steps.append(f"(closed)Set(CLINIC_CLOSED_SOUND={sound})")
    steps.append(f"Set(CLINIC_CLOSED_MOBILE={normalize_did(n.closed_mobile)})")
    steps.append(f"Set(CLINIC_CLOSED_CALLBACK={int(n.closed_callback)})")
    steps.append("Goto(clinic-closed,s,1)")
    return steps


def numbers_dialplan(numbers: list[ClinicNumber], ctx: Context) -> str:
    """Each clinic number's route: its number on the call, its hours, and the queue it rings
    or [clinic-closed] (shipped) outside them. The shipped [from-operator] looks here first."""
    text = "[clinic-numbers]\n"
    for n in numbers:
        did = normalize_did(n.did)
        if not did or n.queue not in queue_choices(list(ctx.queues)):
            continue  # checked when saved: a row that is not a number never reaches Asterisk
        for i, step in enumerate(_route_steps(n, did, ctx)):
            label, _, app = step.partition(")") if step.startswith("(") else ("", "", step)
            prefix = f"exten => {did},1," if i == 0 else f" same => n{label + ')' if label else ''},"
            text += prefix + escape_value(app) + "\n"
    return text + "\n"


def phone_pjsip(phone: DeskPhone) -> str:
    """A desk phone set up in the panel: the shipped desk-phone templates, its digest hash
    (Asterisk never sees the password), no static contact (it registers)."""
    ext = phone.extension
    label = phone_label(phone.label)  # checked when saved; a row written otherwise is cleaned here too
    name = f'"{label}" <{ext}>' if label else f"<{ext}>"
    text = f"; desk phone {ext}\n"
    # an encrypted phone (#30): SIP over TLS only, SRTP keys in its SDP (SDES)
    secure = [("transport", "transport-tls"), ("media_encryption", "sdes"),
              ("media_encryption_optimistic", "no")] if phone.secure and not phone.browser else []
    # a user's phone in the browser (#34): WebRTC over the WebSocket transport (shipped template)
    kind = "browser-phone" if phone.browser else "desk-phone"
    text += _lines(ext, [("auth", ext), ("aors", ext), ("callerid", name), *secure], template=kind)
    text += _lines(ext, [("auth_type", "md5"), ("username", ext), ("realm", SIP_REALM), ("md5_cred", phone.md5_cred)],
                   template="desk-phone-auth")
    text += _lines(ext, [] if phone.browser else [("qualify_frequency", 60)], template=f"{kind}-aor")
    return text


def bans_pjsip(addresses: tuple[str, ...]) -> str:
    """The banned scanners as a PJSIP ACL (res_pjsip_acl: every request from them refused)."""
    valid = []
    for a in addresses:
        try:
            valid.append(str(ipaddress.ip_address(a)))
        except ValueError:
            continue  # only an address Asterisk reported is ever stored; anything else never reaches a config
    return _lines("clinic-bans", [("type", "acl"), *(("deny", a) for a in sorted(set(valid)))]) if valid else ""


def _members(phones: list[DeskPhone], queue: str) -> str:
    return "".join(f"member => PJSIP/{p.extension},0,{p.extension},PJSIP/{p.extension}\n"
                   for p in phones if queue in p.queues)


def queues_config(phones: list[DeskPhone], queues: list[ClinicQueue] | None = None) -> str:
    """The panel's queues with their phones, and the panel's phones as members of the shipped
    queues (after the shipped members)."""
    text = HEADER
    for queue in QUEUE_NAMES:
        if members := _members(phones, queue):
            text += f"[{queue}](+)\n{members}\n"
    for q in queues or []:
        strategy = q.strategy if q.strategy in STRATEGIES else "ringall"  # checked when saved; again here
        text += _lines(q.name, [("strategy", strategy), ("timeout", int(q.ring_seconds))], template="queue-common")
        text = text[:-1] + _members(phones, q.name) + "\n"
    return text


def timeout_dialplan(queues: list[ClinicQueue]) -> str:
    """Where a caller goes when the wait in a panel queue runs out (the shipped
    [clinic-incoming] jumps here after Queue() says TIMEOUT)."""
    text = "[clinic-queue-timeout]\n"
    waits: dict[str, str | int] = {name: "${QUEUE_MAX_WAIT}" for name in QUEUE_NAMES}
    waits.update({q.name: q.max_wait for q in queues})
    for q in queues:
        if q.on_timeout == CALLBACK:
            text += f"exten => {q.name},1,AGI(${{AGI_URL}}/after_hours,${{CLINIC_DID}})\n same => n,Hangup()\n"
        elif q.on_timeout in waits and q.on_timeout != q.name:
            text += (f"exten => {q.name},1,Set(__CLINIC_QUEUE={q.on_timeout})\n"
                     f" same => n,Queue({q.on_timeout},r,,,{waits[q.on_timeout]})\n same => n,Hangup()\n")
        elif q.on_timeout == HANG_UP or q.on_timeout not in waits:
            text += f"exten => {q.name},1,Hangup()\n"
    return text + "\n"


def render_telephony(providers: list[Provider], numbers: list[ClinicNumber] | None = None,
                     ctx: Context | None = None, phones: list[DeskPhone] | None = None) -> dict[str, str]:
    """File name -> text, for the enabled providers (a disabled one leaves Asterisk), the
    clinic numbers and the desk phones set up in the panel."""
    enabled = [p for p in providers if p.enabled]
    desk = [p for p in phones or [] if p.md5_cred]
    ctx = ctx or Context()
    pjsip = (HEADER + "".join(provider_pjsip(p, ctx.own_transports) for p in enabled)
             + "".join(phone_pjsip(p) for p in desk) + bans_pjsip(ctx.bans))
    dialplan = (HEADER + outgoing_dialplan(enabled, ctx.outs, ctx.phone_branches) + numbers_dialplan(numbers or [], ctx)
                + timeout_dialplan(list(ctx.queues)) + "".join(provider_dialplan(p) for p in enabled))
    return {PJSIP_FILE: pjsip, DIALPLAN_FILE: dialplan, QUEUES_FILE: queues_config(desk, list(ctx.queues))}


def expected_objects(providers: list[Provider], numbers: list[ClinicNumber] | None = None,
                     phones: list[DeskPhone] | None = None, queues: list[ClinicQueue] | None = None,
                     ) -> dict[str, set[str]]:
    """What Asterisk must show once the files are applied: the confirmation's checklist."""
    enabled = [p for p in providers if p.enabled]
    desk = [p for p in phones or [] if p.md5_cred]
    return {"endpoints": {p.endpoint for p in enabled} | {p.extension for p in desk},
            "queues": {q.name for q in queues or []},
            "members": {f"{q}/PJSIP/{p.extension}" for p in desk for q in p.queues},
            "registrations": {f"{p.endpoint}-reg" for p in enabled if p.auth == REGISTER},
            "contexts": {f"from-{p.endpoint}" for p in enabled} | {"clinic-trunk-out", "clinic-line-out"}
            | ({"clinic-numbers"} if numbers else set())}

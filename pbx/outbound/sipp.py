"""SIPp as the operator trunk and as administrators' desk phones (tests, demo, benchmarks).

Scenario templates live in ``pbx/outbound/sipp/``; ``@@NAME@@`` holes are filled per run. Every SIPp
process binds to loopback: the desk phones to their static contacts (127.0.0.1:<base + n>), the
operator to ``operator_ip`` (127.0.0.2), so Asterisk tells them apart by source address.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from pbx.asterisk.config import phone_port
from pbx.outbound.sipp_steps import (
    BYE_LABEL,
    CALLER_HANGS_UP,
    PHONE_HANGS_UP,
    TRANSFER_KEY,
    hold_key,
    key_presses,
)
from pbx.settings import Settings

SIPP = "sipp"
SCENARIOS = Path(__file__).parent / "sipp"




def _private_port_range() -> tuple[int, int]:
    """Ports the kernel never hands out on its own: above the ephemeral range (32768-60999 on
    Debian). A port probed free there stays free until SIPp binds it; in the ephemeral range
    a DNS lookup or any bind(0) could take it in between ("Address already in use")."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if 65000 - (high + 1) >= 1000:
        return high + 1, 65000
    return max(1024, low - 4000), low  # an unusual ephemeral range: the block below it


class _PortCursor:
    """Hands out successive blocks, so ports probed free and released for one SIPp are not
    handed to the next one before the first has bound them. Starts at a pid-dependent
    place so a benchmark and the tests on one machine do not walk the same blocks."""

    def __init__(self) -> None:
        self.first, self.last = _private_port_range()
        self.next = self.first + (os.getpid() * 16) % (self.last - self.first)

    def take(self, size: int) -> int:
        self.next += self.next % 2  # RTP wants an even port (RTCP is the odd one above it)
        if self.next + size >= self.last:
            self.next = self.first + self.first % 2
        base, self.next = self.next, self.next + size
        return base


# One per process on purpose: every SIPp this process starts (tests, demo, a benchmark) must
# draw from the same sequence, or two of them could be handed the same block.
_CURSOR = _PortCursor()


def free_udp_ports(count: int, host: str = "127.0.0.1", step: int = 4) -> int:
    """A base port with ``count`` ports free at ``step`` spacing (SIPp RTP uses port and +2)."""
    size = count * step
    for _ in range((_CURSOR.last - _CURSOR.first) // size):
        base = _CURSOR.take(size)
        socks = []
        try:
            for i in range(size):
                t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(t)
                t.bind((host, base + i))
            return base
        except OSError:
            continue  # a SIPp still running from before: the next block
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free UDP port range")


@dataclass
class SippProcess:
    name: str
    proc: asyncio.subprocess.Process
    workdir: Path
    started: float = field(default_factory=time.monotonic)

    async def wait(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
            return -9

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    @property
    def messages(self) -> str:
        path = self.workdir / f"{self.name}.msg"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def errors(self) -> str:
        path = self.workdir / f"{self.name}.err"
        return path.read_text(errors="replace") if path.exists() else ""


def _render(template: str, values: dict[str, str], out: Path) -> Path:
    text = (SCENARIOS / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    out.write_text(text)
    return out


async def _spawn(name: str, args: list[str], workdir: Path, calls: int = 1) -> SippProcess:
    """``calls`` = 0: take calls until killed (the demo's phones)."""
    limit = ["-m", str(calls), "-timeout", "120s"] if calls else []
    full = [
        SIPP, *args, *limit, "-nostdin",
        "-trace_msg", "-message_file", str(workdir / f"{name}.msg"),
        "-trace_err", "-error_file", str(workdir / f"{name}.err"),
    ]
    proc = await asyncio.create_subprocess_exec(
        *full, cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return SippProcess(name, proc, workdir)


NEVER = 600_000  # ring_ms for a phone that rings and is never picked up


async def start_desk_phone(
    settings: Settings,
    extension: str,
    workdir: Path,
    *,
    behaviour: str = "answer",
    ring_ms: int = 2000,
    hangup_ms: int = 0,
    calls: int = 1,
    keys: str = "",
    keys_after_ms: int = 1500,
    refer_to: str = "",
    refer_after_ms: int = 1500,
    hold_after_ms: int = 0,
    hold_ms: int = 0,
) -> SippProcess:
    """A desk phone on its static contact. ``behaviour``: answer (after ``ring_ms``; NEVER
    makes it ring without answering) or busy. ``hangup_ms`` > 0: the phone hangs up itself
    (counted after the keys). ``keys``: pressed ``keys_after_ms`` after the answer.
    ``refer_to``: the transfer key pressed ``refer_after_ms`` after the answer (a REFER to
    that extension), on the first call only. ``hold_after_ms`` > 0: the hold key then (a
    re-INVITE sendonly), resumed ``hold_ms`` later (sendrecv)."""
    return await start_uas(
        settings, f"phone{extension}", "127.0.0.1", phone_port(settings, extension), workdir,
        behaviour=behaviour, ring_ms=ring_ms, hangup_ms=hangup_ms, calls=calls,
        keys=keys, keys_after_ms=keys_after_ms, refer_to=refer_to, refer_after_ms=refer_after_ms,
        hold_after_ms=hold_after_ms, hold_ms=hold_ms,
    )


async def start_operator_uas(
    settings: Settings, workdir: Path, *, behaviour: str = "answer", ring_ms: int = 1000,
    hangup_ms: int = 0, calls: int = 1,
) -> SippProcess:
    """The operator side of outgoing calls: the patient's phone answers, is busy, or rings."""
    a = settings.asterisk
    return await start_uas(
        settings, "patient", a.operator_ip, a.operator_port, workdir,
        behaviour=behaviour, ring_ms=ring_ms, hangup_ms=hangup_ms, calls=calls,
    )




async def start_uas(
    settings: Settings, name: str, ip: str, port: int, workdir: Path, *,
    behaviour: str = "answer", ring_ms: int = 2000, hangup_ms: int = 0, calls: int = 1, keys: str = "",
    keys_after_ms: int = 1500, refer_to: str = "", refer_after_ms: int = 1500, hold_after_ms: int = 0,
    hold_ms: int = 0,
) -> SippProcess:
    if behaviour == "busy":
        scenario = _render("desk_phone_busy.xml", {}, workdir / f"{name}.xml")
    else:
        talk = PHONE_HANGS_UP if hangup_ms > 0 else CALLER_HANGS_UP
        presses = key_presses(keys, keys_after_ms, bye_label="" if hangup_ms > 0 else BYE_LABEL)
        if hold_after_ms:
            presses += hold_key(hold_after_ms, hold_ms)
        if refer_to:
            presses += TRANSFER_KEY.replace("@@REFER_AFTER_MS@@", str(refer_after_ms)).replace("@@REFER_TO@@", refer_to)
        # when the phone sends a request itself (BYE, REFER), the switch's From (with its tag)
        # becomes its To
        ack_action = (
            '<action><ereg regexp=".*" search_in="hdr" header="From:" check_it="true"'
            ' assign_to="peer"/></action>' if hangup_ms > 0 or refer_to or hold_after_ms else ""
        )
        scenario = _render(
            "desk_phone.xml",
            {"TALK": presses + talk.replace("@@HANGUP_MS@@", str(hangup_ms)), "RING_MS": str(ring_ms),
             "ACK_ACTION": ack_action},
            workdir / f"{name}.xml",
        )
    media = free_udp_ports(2, ip)
    args = [
        "-sf", str(scenario), "-i", ip, "-p", str(port), "-mi", ip, "-mp", str(media), "-rtp_echo",
    ]
    return await _spawn(name, args, workdir, calls)


async def start_operator_call(
    settings: Settings,
    caller: str,
    did: str,
    workdir: Path,
    *,
    talk_ms: int = 4000,
    audio: Path | None = None,
    name: str = "operator",
    cancel_after_ms: int | None = None,
    source_ip: str = "",
    to_user: str = "",
) -> SippProcess:
    """The operator delivers a call from ``caller`` to the clinic number ``did``; the caller
    hangs up ``talk_ms`` after the answer, or gives up ``cancel_after_ms`` after it rings.
    A provider set up in the panel sends from its own ``source_ip``; one that puts the
    account's login in the Request-URI (``did``) names the clinic number in To (``to_user``)."""
    a = settings.asterisk
    ip = source_ip or a.operator_ip
    if cancel_after_ms is not None:
        scenario = _render("operator_cancel.xml", {"CANCEL_MS": str(cancel_after_ms)},
                           workdir / f"{name}.xml")
    else:
        action = (
            f'<nop><action><exec rtp_stream="{audio},-1,0"/></action></nop>' if audio else ""
        )
        scenario = _render("operator_call.xml", {"AUDIO_ACTION": action, "TO_USER": to_user or "[service]"},
                           workdir / f"{name}.xml")
    local = free_udp_ports(1, ip, step=1)
    media = free_udp_ports(2, ip)
    args = [
        f"{a.host}:{a.sip_port}", "-sf", str(scenario), "-s", did,
        "-i", ip, "-p", str(local), "-mi", ip, "-mp", str(media),
        "-key", "caller", caller.lstrip("+"), "-d", str(talk_ms),
    ]
    return await _spawn(name, args, workdir)


async def start_provider(
    workdir: Path, ip: str, port: int, login: str, password: str, *, expires: int = 120, name: str = "provider",
) -> SippProcess:
    """A SIP provider that demands digest authentication of ``login``/``password`` for
    REGISTER (200, or 403 for anything else) and for the clinic's outgoing INVITEs (407; the
    patient answers after 1 s and talks until the clinic hangs up). Runs until killed."""
    scenario = _render("provider.xml", {"LOGIN": login, "PASSWORD": password, "EXPIRES": str(expires)},
                       workdir / f"{name}.xml")
    media = free_udp_ports(2, ip)
    return await _spawn(name, ["-sf", str(scenario), "-i", ip, "-p", str(port), "-mi", ip, "-mp", str(media),
                               "-rtp_echo"], workdir, calls=0)


async def register_phone(
    settings: Settings, extension: str, password: str, workdir: Path, port: int,
    hold_ms: int = 2000, answer_ms: int = 0,
) -> SippProcess:
    """A desk phone REGISTERs with digest auth (username = extension), stays registered
    ``hold_ms`` and unregisters (Asterisk keeps contacts in astdb across restarts). With
    ``answer_ms`` it is a working phone meanwhile: answers qualify, and answers calls after
    that many ms of ringing (an out-of-call scenario on the same port as its contact)."""
    a = settings.asterisk
    fields = workdir / f"register{extension}.csv"
    fields.write_text(f"SEQUENTIAL\n{extension}\n")
    scenario = _render("register.xml", {"HOLD_MS": str(hold_ms)}, workdir / f"register{port}.xml")
    args = [
        f"{a.host}:{a.sip_port}", "-sf", str(scenario),
        "-inf", str(fields),
        "-i", "127.0.0.1", "-p", str(port), "-au", extension, "-ap", password,
    ]
    if answer_ms:
        calls = _render("registered_phone_calls.xml", {"RING_MS": str(answer_ms)}, workdir / f"calls{port}.xml")
        args += ["-oocsf", str(calls), "-mi", "127.0.0.1", "-mp", str(free_udp_ports(2)), "-rtp_echo"]
    return await _spawn(f"register{extension}", args, workdir)


async def scan_sip(settings: Settings, extension: str, password: str, workdir: Path, source_ip: str, port: int,
                   attempts: int = 1, name: str = "scanner") -> SippProcess:
    """A SIP scanner: ``attempts`` REGISTERs of ``extension`` with a guessed password from
    ``source_ip`` (each challenged, answered with the wrong digest), one after another."""
    fields = workdir / f"{name}.csv"
    fields.write_text(f"SEQUENTIAL\n{extension}\n")
    scenario = _render("register.xml", {"HOLD_MS": "0"}, workdir / f"{name}.xml")
    a = settings.asterisk
    args = [f"{a.host}:{a.sip_port}", "-sf", str(scenario), "-inf", str(fields), "-i", source_ip, "-p", str(port),
            "-au", extension, "-ap", password, "-r", "20", "-l", "1", "-recv_timeout", "2000"]
    return await _spawn(name, args, workdir, calls=attempts)


async def start_phone_call(
    settings: Settings, extension: str, password: str, dialled: str, workdir: Path, port: int,
    talk_ms: int = 5000,
) -> SippProcess:
    """Desk phone ``extension`` dials ``dialled`` (a colleague, *8 the pickup key) with digest
    auth, from ``port``; talks ``talk_ms`` (RTP echoed) and hangs up, unless the other side
    does first. The [last_To:] of the ACK and BYE is the 200's, with Asterisk's tag."""
    a = settings.asterisk
    scenario = _render("desk_phone_call.xml", {"EXT": extension, "TALK_MS": str(talk_ms)},
                       workdir / f"call{extension}.xml")
    media = free_udp_ports(2, "127.0.0.1")
    args = [
        f"{a.host}:{a.sip_port}", "-sf", str(scenario), "-s", dialled, "-i", "127.0.0.1", "-p", str(port),
        "-mi", "127.0.0.1", "-mp", str(media), "-rtp_echo", "-au", extension, "-ap", password,
    ]
    return await _spawn(f"call{extension}", args, workdir)


async def start_operator_load(
    settings: Settings,
    did: str,
    workdir: Path,
    callers: list[str],
    *,
    total: int,
    concurrent: int,
    rate: float,
    talk_ms: int,
    talk_ms_max: int | None = None,
    cancel_after_ms: int | None = None,
    name: str = "operator_load",
) -> SippProcess:
    """Many operator calls: ``rate`` new calls per second up to ``concurrent`` at once,
    ``total`` in all, each from the next number of ``callers``, hanging up after ``talk_ms``
    (uniformly between ``talk_ms`` and ``talk_ms_max`` when given), or giving up
    ``cancel_after_ms`` after the first ring (missed calls)."""
    a = settings.asterisk
    inf = workdir / f"{name}.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(c.lstrip("+") + "\n" for c in callers))
    template = "operator_cancel.xml" if cancel_after_ms is not None else "operator_call.xml"
    text = (SCENARIOS / template).read_text().replace("[caller]", "[field0]")
    text = text.replace("@@AUDIO_ACTION@@", "").replace("@@CANCEL_MS@@", str(cancel_after_ms))
    text = text.replace("@@TO_USER@@", "[service]")
    if talk_ms_max is not None:
        text = text.replace("<pause/>", f'<pause distribution="uniform" min="{talk_ms}" max="{talk_ms_max}"/>')
    scenario = workdir / f"{name}.xml"
    scenario.write_text(text)
    local = free_udp_ports(1, a.operator_ip, step=1)
    media = free_udp_ports(2, a.operator_ip)
    args = [
        f"{a.host}:{a.sip_port}", "-sf", str(scenario), "-s", did, "-inf", str(inf),
        "-i", a.operator_ip, "-p", str(local), "-mi", a.operator_ip, "-mp", str(media),
        "-d", str(talk_ms), "-r", str(rate), "-l", str(concurrent),
    ]
    full = [
        SIPP, *args, "-m", str(total), "-nostdin", "-timeout", "1800s",
        "-trace_err", "-error_file", str(workdir / f"{name}.err"),
    ]
    proc = await asyncio.create_subprocess_exec(
        *full, cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return SippProcess(name, proc, workdir)

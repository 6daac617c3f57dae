"""The demo without phones: ``clinic-pbx demo-call`` (a speaking patient calls the clinic
through SIPp) and ``clinic-pbx demo-phones`` (desk phones and the click-to-call patient played
by SIPp until Ctrl-C)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pbx.asterisk.config import phone_port
from pbx.outbound.sipp import NEVER, start_desk_phone, start_operator_call, start_operator_uas
from pbx.settings import Settings


@dataclass
class DemoResult:
    ok: bool
    lines: list[str]

    def summary(self) -> str:
        return "\n".join(self.lines)


class DemoCall:
    """``clinic-pbx demo-call``: a patient calls the clinic and a desk phone answers, or
    (``answer="none"``) nobody does and the patient gives up after ``ring_ms``: a missed call.
    The caller speaks (espeak-ng) and the desk phone echoes it, so the recording has sound both
    ways. What happened is read back from Asterisk's own CDR, not from our parameters."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def run(
        self, caller: str, did: str, answer: str, ring_ms: int, talk_ms: int, *, keep: bool = False
    ) -> DemoResult:
        workdir = Path(tempfile.mkdtemp(prefix="clinic-pbx-demo-"))
        try:
            voice = await demo_voice(self.settings.state_dir / "demo")
        except (OSError, RuntimeError) as exc:
            voice = None
            print(f"demo call without a voice: {exc}")
        external = any(port_taken(phone_port(self.settings, ext)) for ext in ("101", "102", "103"))
        phones = [] if external else [  # `clinic-pbx demo-phones` may be playing them already
            await start_desk_phone(
                self.settings, ext, workdir, ring_ms=ring_ms if ext == answer else NEVER
            )
            for ext in ("101", "102", "103")
        ]
        await asyncio.sleep(0.3)
        missed = answer == "none"
        started = time.time()
        call = await start_operator_call(self.settings, caller, did, workdir, talk_ms=talk_ms,
                                         audio=voice, cancel_after_ms=ring_ms if missed else None)
        rc = await call.wait(ring_ms / 1000 + talk_ms / 1000 + 180)
        for phone in phones:
            await phone.wait(5)  # a phone that never rang is stopped after 5 s
        lines = [f"demo call {caller} -> {did}: {'completed' if rc == 0 else f'failed (sipp {rc})'}"]
        if external:
            lines.append("desk phones: played by `clinic-pbx demo-phones` (--answer is theirs to decide)")
        lines.append(await self._what_asterisk_saw(caller, started))
        if rc != 0 or keep:
            lines.append(f"SIP traces: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        return DemoResult(rc == 0, lines)

    async def _what_asterisk_saw(self, caller: str, started: float) -> str:
        from pbx.asterisk.cdr_db import CdrReader
        from pbx.calls.cdr import record_from_cdr

        reader = CdrReader(self.settings.cdr_db_path)
        digits = caller.lstrip("+")
        for _ in range(30):  # Asterisk writes the CDR a moment after the hang-up
            for rows in (await asyncio.to_thread(reader.rows_since, started)).values():
                record = record_from_cdr(rows)
                if record is None or record.caller.lstrip("+") != digits or record.started_at < started - 1:
                    continue
                if record.answered_by:
                    return (f"desk phone {record.answered_by} answered after {record.wait_seconds:.1f} s;"
                            f" talk {record.talk_seconds:.1f} s (Asterisk's CDR)")
                return f"nobody answered; the caller gave up after {record.wait_seconds:.1f} s (a missed call)"
            await asyncio.sleep(0.1)
        return "Asterisk's CDR has no row for this call"


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


async def run_demo_phones(settings: Settings, workdir: Path, stop: asyncio.Event, *,
                          ring_ms: int = 1500, talk_ms: int = 15000) -> list[str]:
    """``clinic-pbx demo-phones``: desk phones 101-103 pick up every call after ``ring_ms``
    (queue calls, the first leg of click-to-call, the callback robot) and press 1, and the operator trunk plays the
    patient who answers click-to-call and hangs up after ``talk_ms``. Until ``stop`` is set;
    returns what went wrong (empty when all ran)."""
    a = settings.asterisk
    taken = [ext for ext in ("101", "102", "103") if port_taken(phone_port(settings, ext))]
    if taken or port_taken(a.operator_port, a.operator_ip):
        return [f"ports in use (desk phones {', '.join(taken) or '-'} or the operator"
                f" {a.operator_ip}:{a.operator_port}): is another demo or a real operator running?"]
    # each phone presses 1 two seconds after it picks up: the website callback robot's «нажмите
    # любую клавишу» (on any other call the key is just a tone)
    procs = [await start_desk_phone(settings, ext, workdir, ring_ms=ring_ms, calls=0, keys="1", keys_after_ms=2000)
             for ext in ("101", "102", "103")]
    procs.append(await start_operator_uas(settings, workdir, ring_ms=ring_ms, hangup_ms=talk_ms, calls=0))
    try:
        waiters = [asyncio.ensure_future(p.proc.wait()) for p in procs]
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        return [f"{p.name} stopped: {p.errors[-300:]}" for p in procs if p.proc.returncode is not None]
    finally:
        for p in procs:
            p.kill()
            await p.proc.wait()


async def demo_voice(folder: Path) -> Path:
    """A few seconds of a Russian patient's speech as a mu-law WAV for SIPp (made once)."""
    out = folder / "caller-voice.ulaw.wav"
    if out.exists():
        return out
    os.makedirs(folder, exist_ok=True)
    raw = folder / "caller-voice.raw.wav"
    text = "Здравствуйте, это демонстрационный звонок. Я хочу записаться на приём к стоматологу."
    for args in (["espeak-ng", "-v", "ru", "-w", str(raw), text],
                 ["sox", str(raw), "-r", "8000", "-c", "1", "-e", "u-law", str(out) + ".tmp.wav"]):
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]}: {err.decode(errors='replace').strip()[:200]}")
    os.replace(str(out) + ".tmp.wav", out)
    raw.unlink(missing_ok=True)
    return out

"""Helpers for the call-tracking scenarios: phones, waiting for records, the CDR check."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from pbx.app import Services
from pbx.calls.tracker import endpoint_of
from pbx.outbound.sipp import NEVER, SippProcess, start_desk_phone

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ami"


async def start_phones(services: Services, tmp: Path, spec: dict[str, dict[str, Any]], *,
                       others: bool = True) -> dict[str, SippProcess]:
    """Start all three desk phones: the ones in ``spec`` as given, the others ringing and never
    answering. No INVITE may go to a port nobody listens on: PJSIP would retransmit it for
    32 s, into the next test's phones (lab pitfall 8). ``others`` False: only the phones in
    ``spec`` (a click-to-call rings its own phone only: the others would wait for nothing)."""
    full = {ext: spec.get(ext, {"ring_ms": NEVER}) for ext in ("101", "102", "103") if others or ext in spec}
    phones = {ext: await start_desk_phone(services.settings, ext, tmp, **kw) for ext, kw in full.items()}
    await asyncio.sleep(0.3)
    return phones


async def stop_all(*procs: SippProcess, wait: float = 10.0) -> dict[str, int]:
    """Each SIPp's exit code once it ends, or -9 when it had to be killed after ``wait`` s (all
    waited for at once: a phone no call reached costs ``wait`` once, not once per phone)."""
    codes = await asyncio.gather(*(p.wait(wait) for p in procs))
    return {p.name: code for p, code in zip(procs, codes, strict=True)}


def cdr_rows(path: Path, linkedid: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM cdr WHERE linkedid = ? ORDER BY sequence", (linkedid,)).fetchall()
    finally:
        db.close()
    return [dict(r) for r in rows]


async def wait_cdr(path: Path, linkedid: str, count: int = 1, timeout: float = 5.0,
                   answered: bool = False) -> list[dict[str, Any]]:
    """The CDR rows of a call once there are ``count`` (and, with ``answered``, an answered one:
    Asterisk writes the rows of legs that rang and stopped before the talk's row)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = cdr_rows(path, linkedid)
        done = len(rows) >= count and (not answered or any(r["disposition"] == "ANSWERED" for r in rows))
        if done or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def wait_call(services: Services, linkedid: str, timeout: float = 15.0) -> dict[str, Any]:
    from crm.call_listing import get_call_by_linkedid

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        assert services.calls is not None
        await services.calls.flush()
        call = await get_call_by_linkedid(services.db, linkedid)
        if call is not None:
            return call
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no call record for {linkedid}")
        await asyncio.sleep(0.2)


def billsec_agrees(billsec: Any, talk: float) -> bool:
    """Asterisk's billsec is ``end - answer`` in whole seconds (truncated), and the CDR takes
    its answer and end instants apart from AMI's events (a bridge forming, a hang-up request
    handled): up to half a second seen either way. So talk - billsec lies in [-1, 1 + SKEW):
    a talk of 13.002 s can be billsec 12 (seen in the soak), one of 2.505 s billsec 3."""
    return -1.0 <= talk - float(billsec) < 1.0 + SKEW


SKEW = 0.25  # seconds between the instants AMI and the CDR take for the same answer or hang-up


def assert_matches_cdr(call: dict[str, Any], rows: list[dict[str, Any]], trunks: set[str] = frozenset({"operator"})) -> None:
    """Our record and Asterisk's CDR agree: answered or not, who answered, billsec (truncated
    by Asterisk: ``billsec_agrees``), and which phones were dialled."""
    assert rows, "Asterisk wrote no CDR for this call"
    dialled = [r for r in rows if r["dstchannel"]]
    answered = [r for r in dialled if r["disposition"] == "ANSWERED"]
    if call["direction"] == "outgoing":
        trunk_answered = [r for r in answered if endpoint_of(r["dstchannel"]) in trunks]
        assert bool(trunk_answered) == (call["call_type"] == "outgoing"), (call, rows)
        if trunk_answered:
            assert billsec_agrees(trunk_answered[0]["billsec"], call["talk_seconds"]), (call, rows)
        return
    assert bool(answered) == (call["answered_at"] is not None), (call, rows)
    if answered:
        assert endpoint_of(answered[0]["dstchannel"]) == call["answered_by_ext"]
        assert billsec_agrees(answered[0]["billsec"], call["talk_seconds"]), (call, rows)
    ours = sorted({leg["extension"] for leg in call["legs"]})
    theirs = sorted({endpoint_of(r["dstchannel"]) for r in dialled})
    assert ours == theirs, (ours, theirs)


def keep_fixture(tmp: Path, name: str) -> None:
    """CLINIC_PBX_RECORD_FIXTURES=1: keep this scenario's raw AMI as a unit-test fixture."""
    if os.environ.get("CLINIC_PBX_RECORD_FIXTURES"):
        FIXTURES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp / "ami.amiraw", FIXTURES / f"{name}.amiraw")


async def log_in_with_phone(page, base: str, phone: str = "101") -> None:
    """Анна logs in and answers the shift question with ``phone`` (an extension, or "browser")."""
    await page.goto(base + "/login")
    await page.fill("input[name=login]", "anna")
    await page.fill("input[name=password]", "верный-пароль")
    await page.click("form.login button[type=submit]")
    await page.wait_for_url(base + "/shift")
    await page.check(f"input[value='{phone}']")
    await page.click("form.shift button[type=submit]")
    await page.wait_for_url(base + "/", wait_until="commit")
    await page.wait_for_selector("#shift-phone")
    if phone.isdigit():
        assert f"Телефон: {phone}" in await page.text_content("#shift-phone")

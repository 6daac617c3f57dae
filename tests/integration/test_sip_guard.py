"""#30, SIP scanners: a SIPp scanner guessing a desk phone's password from one loopback address
is banned (a PJSIP ACL applied live: Asterisk answers it 403 at once), listed in the panel,
while the phone itself keeps registering from the clinic's address; the ban ends by itself."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from crm.rules.sip_guard import GuardPolicy
from pbx.outbound.sipp import free_udp_ports, register_phone, scan_sip
from tests.integration.test_providers import Panel, panel  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
SCANNER_IP = "127.0.0.8"


async def wait_page(p: Panel, want: bool, pattern: str, timeout: float = 20.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    page = ""
    while asyncio.get_running_loop().time() < deadline:
        page = await p.page()
        if (re.search(pattern, page) is not None) == want and 'data-applied="1"' in page:
            return page
        await asyncio.sleep(0.3)
    raise AssertionError(f"{pattern!r} {'never' if want else 'still'} on the page")


async def test_a_scanner_is_banned_the_phone_keeps_working_and_the_ban_ends(
        server, panel: Panel, asterisk, tmp_path: Path) -> None:  # noqa: F811
    services, _ = server
    assert services.telephony is not None
    services.telephony.guard_policy = GuardPolicy(threshold=3, window=60, ban_seconds=8)
    status, page = await panel.post({"action": "phone_save", "extension": "105", "label": "Ресепшн 5"})
    password = re.search(r'class="password">([A-Za-z0-9]{16})<', page).group(1)
    await wait_page(panel, True, r'data-phone="105"')

    scanner = await scan_sip(services.settings, "105", "guess-123", tmp_path, SCANNER_IP,
                             free_udp_ports(1, SCANNER_IP, step=1), attempts=6)
    await scanner.wait(30)
    page = await wait_page(panel, True, rf'data-ban="{re.escape(SCANNER_IP)}"')
    assert "ChallengeResponseFailed" in page or "InvalidPassword" in page
    # banned: refused at once, before any challenge
    probe = await scan_sip(services.settings, "105", "guess-456", tmp_path, SCANNER_IP,
                           free_udp_ports(1, SCANNER_IP, step=1), name="probe")
    await probe.wait(15)
    assert "403 Forbidden" in probe.messages and "401 Unauthorized" not in probe.messages, probe.messages[-1500:]
    # the phone, from the clinic's own address, registers as ever
    phone = await register_phone(services.settings, "105", password, tmp_path, free_udp_ports(1, step=1), hold_ms=300)
    assert await phone.wait(20) == 0, phone.errors

    # the ban ends by itself: challenged again like anybody
    await wait_page(panel, False, rf'data-ban="{re.escape(SCANNER_IP)}"', timeout=30)
    for _ in range(100):  # the box renders again once the ban's time is up (its next tick)
        if services.telephony.applier.state.bans_end is None:
            break
        await asyncio.sleep(0.1)
    assert "clinic-bans" not in (services.settings.asterisk_etc / "pjsip_clinic.conf").read_text()
    again = await scan_sip(services.settings, "105", "guess-789", tmp_path, SCANNER_IP,
                           free_udp_ports(1, SCANNER_IP, step=1), name="again")
    await again.wait(15)
    assert "401 Unauthorized" in again.messages

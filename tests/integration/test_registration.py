"""Desk phones register with digest auth; a wrong password is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pbx.outbound.sipp import free_udp_ports, register_phone

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]


async def test_desk_phone_registers_with_its_password(asterisk, test_settings, tmp_path: Path) -> None:
    port = free_udp_ports(1, step=1)
    password = test_settings.asterisk.phone_password + "102"
    good = await register_phone(test_settings, "102", password, tmp_path, port, hold_ms=3000)
    contact = f"102/sip:102@127.0.0.1:{port}"
    for _ in range(50):
        if contact in asterisk.rx("pjsip show contacts"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"102 never registered: {good.errors}")
    assert await good.wait(20) == 0, good.errors
    assert contact not in asterisk.rx("pjsip show contacts")  # unregistered again

    bad_port = free_udp_ports(1, step=1)
    bad = await register_phone(test_settings, "103", "wrong-password", tmp_path, bad_port)
    assert await bad.wait(20) != 0  # the second REGISTER gets 401 again, not 200
    assert f"103/sip:103@127.0.0.1:{bad_port}" not in asterisk.rx("pjsip show contacts")

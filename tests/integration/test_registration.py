"""Desk phones register with digest auth; a wrong password is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.sipp import free_udp_ports, register_phone

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]


async def test_desk_phone_registers_with_its_password(asterisk, test_settings, tmp_path: Path) -> None:
    try:
        await check_registration(asterisk, test_settings, tmp_path)
    finally:
        asterisk.start()  # drop the registered contacts: later tests use static ones


async def check_registration(asterisk, test_settings, tmp_path: Path) -> None:
    port = free_udp_ports(1, step=1)
    good = await register_phone(test_settings, "102", test_settings.asterisk.phone_password + "102", tmp_path, port)
    assert await good.wait(20) == 0, good.errors
    contacts = asterisk.rx("pjsip show contacts")
    assert f"102/sip:102@127.0.0.1:{port}" in contacts

    bad_port = free_udp_ports(1, step=1)
    bad = await register_phone(test_settings, "103", "wrong-password", tmp_path, bad_port)
    assert await bad.wait(20) != 0  # the second REGISTER gets 401 again, not 200
    assert f"103/sip:103@127.0.0.1:{bad_port}" not in asterisk.rx("pjsip show contacts")

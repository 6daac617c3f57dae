"""``clinic-pbx check`` reports all three adapters against the running server. (ARI calls
with DTMF from patient-sim are exercised by the robot's tests, test_robot.py.)"""

from __future__ import annotations

import dataclasses

import pytest

from pbx.cli.checks import run_checks

pytestmark = pytest.mark.integration


async def test_check_reports_ami_ari_agi(server) -> None:
    services, _ = server
    s = services.settings
    settings = dataclasses.replace(s, web=dataclasses.replace(s.web, port=services.web_port))
    results = await run_checks(settings, timeout=5)
    assert {name: ok for name, (ok, _) in results.items()} == {
        "AMI": True, "ARI": True, "FastAGI": True, "Database": True, "Disk": True, "Server": True}
    assert "22." in results["AMI"][1]

"""``clinic-pbx check`` reports all three adapters against the running server. (ARI calls
with DTMF from patient-sim are exercised by the robot's tests, test_robot.py.)"""

from __future__ import annotations

import pytest

from pbx.checks import run_checks

pytestmark = pytest.mark.integration


async def test_check_reports_ami_ari_agi(server) -> None:
    services, _ = server
    results = await run_checks(services.settings, timeout=5)
    assert {name: ok for name, (ok, _) in results.items()} == {"AMI": True, "ARI": True, "FastAGI": True}
    assert "22." in results["AMI"][1]

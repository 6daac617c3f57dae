"""ARI: originate into the Stasis app a Local channel into patient-sim, which answers and
presses 1; and ``clinic-pbx check`` reports all three adapters against the running server."""

from __future__ import annotations

import asyncio

import pytest

from pbx.ari.client import AriEvent
from pbx.checks import run_checks

pytestmark = pytest.mark.integration


async def next_event(ari, kind: str, timeout: float = 15.0) -> AriEvent:
    while True:
        item = await asyncio.wait_for(ari.events.get(), timeout)
        if isinstance(item, AriEvent) and item.type == kind:
            return item


async def test_ari_originate_receives_dtmf_from_patient_sim(server) -> None:
    services, _ = server
    ari = services.ari
    app = services.settings.asterisk.ari_app
    channel = await ari.post(
        "channels", endpoint="Local/1@patient-sim", app=app, appArgs="test",
        variables=None,
    )
    start = await next_event(ari, "StasisStart")
    assert start.data["channel"]["id"] == channel["id"]
    await ari.post(f"channels/{channel['id']}/answer")
    dtmf = await next_event(ari, "ChannelDtmfReceived")
    assert dtmf.data["digit"] == "1"
    await ari.delete(f"channels/{channel['id']}")
    await next_event(ari, "StasisEnd")


async def test_check_reports_ami_ari_agi(server) -> None:
    services, _ = server
    results = await run_checks(services.settings, timeout=5)
    assert {name: ok for name, (ok, _) in results.items()} == {"AMI": True, "ARI": True, "FastAGI": True}
    assert "22." in results["AMI"][1]

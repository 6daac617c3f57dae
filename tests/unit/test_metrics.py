"""/metrics: Prometheus text from loopback (or with the token), counts and timings only."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from crm import call_listing
from crm.rules.call_records import CallFinished, CallRecord, LegRecord
from pbx.app import SERVICES, Adapters, build_app
from tests.unit.panel_client import offline_settings
from web.metrics import _allowed, quantile, render

LINE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$')


async def test_metrics_page(tmp_path: Path) -> None:
    app = build_app(offline_settings(tmp_path), adapters=Adapters.offline(), run_escort=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        services = app[SERVICES]
        t0 = 1_790_000_000.0
        leg = LegRecord("101", "1.1", "answered", t0, t0 + 2, t0 + 30, False)
        services.calls._apply([CallFinished(CallRecord("1.0", "incoming", "incoming", "74951110001", "79161234567",
                                                       "74951110001", "q", (leg,), "101", t0, t0 + 2, t0 + 30, 2.0,
                                                       28.0, "caller", ""), )], received_at=None)
        await services.calls.flush()
        assert await call_listing.get_call_by_linkedid(services.db, "1.0")
        r = await client.get("/metrics")  # no login: it is for the monitoring, from loopback
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
        samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert all(LINE.match(ln) for ln in samples), [ln for ln in samples if not LINE.match(ln)]
        assert 'clinic_pbx_calls_recorded_total{source="records"} 1' in text
        assert 'clinic_pbx_up{part="db"} 1' in text and 'clinic_pbx_up{part="ami"} 0' in text
        assert "clinic_pbx_outbox_depth 0" in text and "clinic_pbx_job_lag_seconds 0" in text
        assert "79161234567" not in text  # no personal data


def test_beyond_loopback_only_with_the_token() -> None:
    class Req:
        def __init__(self, remote: str, auth: str = "", token: str = "") -> None:
            self.remote, self.headers = remote, {"Authorization": auth}
            settings = type("S", (), {"web": type("W", (), {"metrics_token": token})()})()
            self.app = {SERVICES: type("Sv", (), {"settings": settings})()}

    assert _allowed(Req("127.0.0.1")) and _allowed(Req("::1"))
    assert not _allowed(Req("10.1.2.3"))
    assert not _allowed(Req("10.1.2.3", "Bearer wrong", token="s3cret"))
    assert _allowed(Req("10.1.2.3", "Bearer s3cret", token="s3cret"))
    assert not _allowed(Req("10.1.2.3", "Bearer ", token=""))  # no token set: loopback only


def test_render_and_quantile() -> None:
    text = render([("m", "gauge", "help", {}, 1.0), ("m", "gauge", "help", {"a": "b"}, 2.5)])
    assert text.count("# TYPE m gauge") == 1 and 'm{a="b"} 2.5' in text
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0 and quantile([], 0.99) == 0.0


async def test_agi_latency_histogram_and_the_callback_robot(tmp_path: Path) -> None:
    from agi.server import FastAgiServer
    from crm import callbacks

    app = build_app(offline_settings(tmp_path), adapters=Adapters.offline(), run_escort=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        services = app[SERVICES]
        agi = FastAgiServer("127.0.0.1", 0)
        for seconds in (0.0004, 0.0015, 0.003, 0.003, 2.0):
            agi._timed(seconds)
        services.agi = agi
        await callbacks.create_request(services.db, callbacks.NewRequest(phone="+79035550000", source_name="X"), 1.0)
        text = await (await client.get("/metrics")).text()
        assert 'clinic_pbx_agi_latency_seconds_bucket{le="0.001"} 1' in text
        assert 'clinic_pbx_agi_latency_seconds_bucket{le="0.002"} 2' in text
        assert 'clinic_pbx_agi_latency_seconds_bucket{le="0.005"} 4' in text
        assert 'clinic_pbx_agi_latency_seconds_bucket{le="1"} 4' in text
        assert 'clinic_pbx_agi_latency_seconds_bucket{le="+Inf"} 5' in text
        assert "clinic_pbx_agi_latency_seconds_count 5" in text and "# TYPE clinic_pbx_agi_latency_seconds histogram" in text
        assert text.count("# TYPE clinic_pbx_agi_latency_seconds") == 1
        assert "clinic_pbx_callback_requests_open 1" in text and "clinic_pbx_mail_outbox_depth 0" in text
        samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert all(LINE.match(ln) for ln in samples), [ln for ln in samples if not LINE.match(ln)]

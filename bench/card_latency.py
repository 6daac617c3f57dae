"""Ring -> card: how long after Asterisk starts ringing a desk phone the administrator's
browser receives the call card. The real path: SIPp (the operator) calls the clinic DID,
Asterisk runs FastAGI and the queue and rings SIPp desk phones; AMI DialBegin for phone 101
is received (the start of the clock, its receive time) -> tracker -> live hub -> the SSE
stream of a logged-in user bound to 101 (the end: the card's arrival at the client).
Several tabs are open, as at a front desk. Printed: p50 / p95 / p99 / max over the calls.
The browser's own rendering adds little (the Chromium test measures the DOM: ~3 ms).

    .venv/bin/python bench/card_latency.py [--calls 60] [--tabs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

from crm import users  # noqa: E402
from crm.demo import load_demo  # noqa: E402
from pbx.ami.client import AmiEvent  # noqa: E402
from pbx.app import SERVICES, build_app  # noqa: E402
from pbx.asterisk.embedded import EmbeddedAsterisk  # noqa: E402
from pbx.outbound.sipp import NEVER, start_desk_phone, start_operator_call  # noqa: E402
from pbx.settings import PROJECT_DIR, AsteriskSettings, Settings, with_generated_secrets  # noqa: E402

STATE = PROJECT_DIR / ".local" / "bench-cards"


def settings() -> Settings:
    asterisk = AsteriskSettings(sip_port=29060, ami_port=29038, http_port=29088, agi_port=29573,
                                rtp_start=37000, rtp_end=37999, operator_port=29090, phone_port_base=29070,
                                ring_seconds=10)
    return with_generated_secrets(Settings(state_dir=STATE, asterisk=asterisk, log_level="WARNING"))


async def login(base: str, session: aiohttp.ClientSession) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', await (await session.get(base + "/login")).text()).group(1)
    await session.post(base + "/login", data={"login": "bench", "password": "bench-password", "csrf_token": token})
    page = await (await session.get(base + "/shift")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    await session.post(base + "/shift", data={"extension": "101", "csrf_token": token})


async def tab(base: str, session: aiohttp.ClientSession, seen: dict[str, float], ready: asyncio.Event) -> None:
    async with session.get(base + "/live", timeout=aiohttp.ClientTimeout(total=None)) as resp:
        ready.set()
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            msg = json.loads(line[6:])
            if msg.get("type") == "card" and msg["card"]["status"] == "ringing":
                seen.setdefault(msg["card"]["linkedid"], time.time())


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=60)
    p.add_argument("--tabs", type=int, default=5)
    args = p.parse_args()
    s = settings()
    shutil.rmtree(STATE / "crm.sqlite", ignore_errors=True)
    s.db_path.unlink(missing_ok=True)
    ast = EmbeddedAsterisk(s)
    if not ast.installed:
        sys.exit("Asterisk is not installed: run `make test` or scripts/install-asterisk.sh")
    await asyncio.to_thread(ast.start)
    app = build_app(s, manage_asterisk=False)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    services = app[SERVICES]
    work = STATE / "sipp"
    work.mkdir(parents=True, exist_ok=True)
    rang: dict[str, float] = {}
    sessions: list[aiohttp.ClientSession] = []
    tasks: list[asyncio.Task[None]] = []

    def on_ami(item: object) -> None:
        if isinstance(item, AmiEvent) and item.name == "DialBegin" and \
                str(item.headers.get("DestChannel", "")).startswith("PJSIP/101-"):
            rang.setdefault(str(item.headers.get("Linkedid")), item.received_at)

    try:
        assert services.ami is not None and await services.ami.wait_connected(10)
        assert services.pump is not None
        services.pump.add_sink(on_ami)
        await load_demo(services.db)
        await users.create_user(services.db, "bench", "bench-password", full_name="Бенч")
        base = f"http://127.0.0.1:{srv.port}"
        seen: dict[str, float] = {}
        for _ in range(args.tabs):
            session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # an IP host
            await login(base, session)
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(tab(base, session, seen, ready)))
            await ready.wait()
            sessions.append(session)
        phones = {ext: await start_desk_phone(s, ext, work, ring_ms=300 if ext == "101" else NEVER, calls=args.calls)
                  for ext in ("101", "102", "103")}
        await asyncio.sleep(0.3)
        for i in range(args.calls):
            call = await start_operator_call(s, "+79161234567", "74951110001", work, talk_ms=200, name=f"op{i % 2}")
            await call.wait(30)
        await asyncio.sleep(1)
        for proc in phones.values():
            proc.kill()
        lat = sorted((seen[k] - v) * 1000 for k, v in rang.items() if k in seen)
        if not lat:
            sys.exit(f"no card arrived (rings seen: {len(rang)}, cards seen: {len(seen)})")
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else lat * 100
        print(f"{len(lat)} of {args.calls} calls reached the card ({args.tabs} tabs open on phone 101)")
        print(f"ring (AMI DialBegin received) -> card received over SSE: p50 {statistics.median(lat):.1f} ms,"
              f" p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms, max {lat[-1]:.1f} ms")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in sessions:
            await session.close()
        await srv.close()
        await asyncio.to_thread(ast.stop)


if __name__ == "__main__":
    asyncio.run(main())

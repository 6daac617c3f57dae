"""A clinic chain under load through real Asterisks: two branch boxes, each `clinic-pbx run` as
its own process with its own embedded Asterisk (its own ports, RTP range and ``system_name``),
both writing into one PostgreSQL (a throwaway cluster, ``tests/pg_cluster.py``), each taking N
simultaneous SIPp calls at the same time (operator trunk -> FastAGI lookup -> MixMonitor ->
queue -> desk phone 101).

Printed per box: calls in its own CDR, records disagreeing with that CDR (missing, doubled,
or different: answered or not, who answered, billsec ±1 s, the phones dialled; must be 0), the
commit latency p50/p99 from the process's /metrics (AMI event that finished a call -> committed
in PostgreSQL), CPU and RSS of clinic-pbx and of Asterisk.

    .venv/bin/python bench/chain_load.py [--calls 100] [--talk 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
import urllib.request
from pathlib import Path

from harness import BenchServer, bench_config, compare_with_cdr, proc_stats

from pbx.outbound.sipp import NEVER, start_desk_phone, start_operator_load
from pbx.settings import PROJECT_DIR
from tests.pg_cluster import running_cluster

BENCH = PROJECT_DIR / ".local" / "bench-chain"
BOXES = (("", 29000, 28090, (35000, 35999)), ("sadovaya", 30000, 28091, (36000, 36999)))


def commit_quantiles(port: int) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, calls timed) from the process's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    q = {m[0]: float(m[1]) * 1000 for m in re.findall(
        r'clinic_pbx_commit_latency_seconds\{quantile="([0-9.]+)"\} ([0-9.e+-]+)', text)}
    n = re.search(r"clinic_pbx_commit_latency_seconds_count ([0-9.]+)", text)
    return q.get("0.5", float("nan")), q.get("0.99", float("nan")), int(float(n.group(1))) if n else 0


async def load(server: BenchServer, n: int, talk_s: int, workdir: Path) -> tuple[float, float]:
    """N calls up at once on one box, each slot used twice; returns (wall s, clinic-pbx CPU s)."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    settings = server.settings
    phones = [await start_desk_phone(settings, "101", workdir, ring_ms=1000, calls=n * 2)]
    phones += [await start_desk_phone(settings, ext, workdir, ring_ms=NEVER, calls=n * 2) for ext in ("102", "103")]
    await asyncio.sleep(0.5)
    rate = max(5.0, n / 10)
    callers = [f"+7926{random.randint(0, 9_999_999):07d}" for _ in range(n * 2)]
    c0, _ = proc_stats(server.pid)
    t0 = time.perf_counter()
    sipp = await start_operator_load(settings, "74951110002", workdir, callers, total=n * 2, concurrent=n,
                                     rate=rate, talk_ms=talk_s * 1000)
    await sipp.wait(talk_s * 4 + n * 2 / rate + 120)
    wall = time.perf_counter() - t0
    c1, _ = proc_stats(server.pid)
    for p in phones:
        p.kill()
    return wall, c1 - c0


async def main(args: argparse.Namespace) -> None:
    with running_cluster() as cluster:
        url = cluster.new_database()
        servers = [BenchServer(BENCH / (name or "main"), bench_config(BENCH / (name or "main") / "state", base, web,
                                                                       rtp=rtp, database=url, system_name=name))
                   for name, base, web, rtp in BOXES]
        await servers[0].init()  # one CRM: the demo clinic once
        for s in servers:
            await s.start()
        try:
            print(f"two boxes, one PostgreSQL ({url.split('@')[1]}); {args.calls} simultaneous calls"
                  f" on each box at once, {args.calls * 2} calls of {args.talk} s per box")
            a0 = [proc_stats(s.asterisk_pid)[0] for s in servers]
            since = time.time()
            runs = await asyncio.gather(*(load(s, args.calls, args.talk, s.folder / "run") for s in servers))
            await asyncio.sleep(5)  # the last records and CDR rows
            for s, (wall, cpu), a_before in zip(servers, runs, a0, strict=True):
                calls, bad = compare_with_cdr(s.settings, since)
                p50, p99, timed = commit_quantiles(s.settings.web.port)
                a_cpu, a_rss = proc_stats(s.asterisk_pid)
                _, rss = proc_stats(s.pid)
                print(f"box {s.settings.asterisk.system_name or 'main'}: {calls} calls in its CDR in {wall:.0f} s,"
                      f" records disagreeing with it: {len(bad)}; commit p50 {p50:.1f} ms, p99 {p99:.1f} ms"
                      f" ({timed} timed); clinic-pbx {100 * cpu / wall:.0f}% CPU, {rss / 1e6:.0f} MB;"
                      f" Asterisk {100 * (a_cpu - a_before) / wall:.0f}% CPU, {a_rss / 1e6:.0f} MB")
                for line in bad[:10]:
                    print("   ", line)
        finally:
            for s in servers:
                await s.stop()
                await s.stop_asterisk()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100, help="simultaneous calls per box")
    ap.add_argument("--talk", type=int, default=20)
    asyncio.run(main(ap.parse_args()))

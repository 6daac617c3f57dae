"""SIPp load through the real clinic path: operator trunk -> FastAGI lookup -> MixMonitor ->
queue -> desk phone, at 50, 100 and 200 simultaneous calls.

Runs ``clinic-pbx run`` as its own process (with its own embedded Asterisk on bench ports and
a CRM with demo patients), SIPp as the operator and as desk phone 101 (one SIPp process that
takes every call: the bench config lets a phone take many calls). Printed per level: calls,
clinic-pbx CPU (% of one core) and RSS, Asterisk CPU and RSS, and how many calls' records
disagree with Asterisk's CDR for the same linkedid (answered or not, who answered, billsec
±1 s, which phones were dialled). That number must be 0.

    .venv/bin/python bench/load_sipp.py [--levels 50,100,200] [--talk 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

from harness import BenchServer, bench_config, compare_with_cdr, proc_stats

from pbx.outbound.sipp import NEVER, start_desk_phone, start_operator_load
from pbx.settings import PROJECT_DIR

BENCH = PROJECT_DIR / ".local" / "bench-load"


async def level(settings, n: int, talk_s: int, workdir: Path, server_pid: int, ast_pid: int) -> None:
    phones = [await start_desk_phone(settings, "101", workdir, ring_ms=1000, calls=n * 2)]
    phones += [await start_desk_phone(settings, ext, workdir, ring_ms=NEVER, calls=n * 2)
               for ext in ("102", "103")]
    await asyncio.sleep(0.5)
    rate = max(5.0, n / 10)  # reach the level in ~10 s
    total = n * 2  # every call slot is used twice
    callers = [f"+7926{random.randint(0, 9_999_999):07d}" for _ in range(total)]
    since_wall = time.time()
    c0, _ = proc_stats(server_pid)
    a0, _ = proc_stats(ast_pid)
    t0 = time.perf_counter()
    load = await start_operator_load(settings, "74951110002", workdir, callers, total=total,
                                     concurrent=n, rate=rate, talk_ms=talk_s * 1000)
    rc = await load.wait(talk_s * 4 + total / rate + 120)
    wall = time.perf_counter() - t0
    c1, rss = proc_stats(server_pid)
    a1, arss = proc_stats(ast_pid)
    for p in phones:
        p.kill()
    await asyncio.sleep(3)  # the last records and CDR rows
    calls, bad = compare_with_cdr(settings, since_wall)
    print(f"{n:4d} simultaneous: {calls} calls in {wall:.0f} s (sipp rc {rc}); "
          f"clinic-pbx {100 * (c1 - c0) / wall:.0f}% CPU, {rss / 1e6:.0f} MB RSS; "
          f"Asterisk {100 * (a1 - a0) / wall:.0f}% CPU, {arss / 1e6:.0f} MB; "
          f"records disagreeing with the CDR: {len(bad)}")


async def main(args) -> None:
    server = BenchServer(BENCH, bench_config(BENCH / "state"))
    await server.init()
    await server.start()
    try:
        print(f"clinic-pbx pid {server.pid}, Asterisk pid {server.asterisk_pid}; calls of {args.talk} s, "
              f"linear queue, FastAGI lookup + MixMonitor recording on every call")
        for n in [int(x) for x in args.levels.split(",")]:
            (BENCH / "runs" / str(n)).mkdir(parents=True, exist_ok=True)
            await level(server.settings, n, args.talk, BENCH / "runs" / str(n), server.pid, server.asterisk_pid)
            await asyncio.sleep(35)  # let PJSIP transactions of this level expire
    finally:
        await server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="50,100,200")
    ap.add_argument("--talk", type=int, default=20)
    asyncio.run(main(ap.parse_args()))

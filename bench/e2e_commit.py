"""End to end inside clinic-pbx: AMI bytes in -> call record committed in SQLite.

A local fake AMI server streams real call traffic (the recorded scenarios, renumbered) at a
steady call rate into the production path: AmiClient (framing, ordered queue) -> EventPump ->
CallService (normalize, tracker, one SQLite writer, WAL). For every call, the latency is
measured from the receive time of the AMI event that finished it to its commit.

    .venv/bin/python bench/e2e_commit.py [--calls 3000] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ami_path import ami_path  # noqa: E402
from bench.tracker import scenario_calls  # noqa: E402
from crm.db import Database  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def run(calls: int, rate: float) -> None:
    templates = [t for t in scenario_calls() if len(t) > 50]
    tmp = Path(tempfile.mkdtemp(prefix="clinic-pbx-bench-"))
    db = Database(tmp / "crm.sqlite")
    await db.open()
    async with ami_path(db, tmp / "none.db") as path:
        service, pump = path.service, path.pump
        await asyncio.sleep(0.2)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        await path.send_calls(templates, calls, 2_000_000, rate)  # paced: `rate` calls per second
        await asyncio.sleep(1.0)  # the last bytes cross loopback and the pump
        await service.flush(30)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        lat = [x * 1000 for x in service.commit_latency]
        print(f"{calls} calls at {rate}/s ({pump.stats.events:,} AMI events, "
              f"{pump.stats.events / wall:,.0f}/s): {service.stats['records']} records committed")
        print(f"commit latency (last event received -> committed): p50 {statistics.median(lat):.1f} ms, "
              f"p99 {pct(lat, 0.99):.1f} ms, max {max(lat):.1f} ms   (goal: p99 <= 50 ms)")
        print(f"CPU of this process (AMI + tracker + SQLite + the fake server): {cpu / wall * 100:.0f}% "
              f"of one core; max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    await db.close()
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=20.0)
    args = ap.parse_args()
    asyncio.run(run(args.calls, args.rate))


if __name__ == "__main__":
    main()

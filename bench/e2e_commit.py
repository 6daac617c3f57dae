"""End to end inside clinic-pbx: AMI bytes in -> call record committed in SQLite.

A local fake AMI server streams real call traffic (the recorded scenarios, renumbered) at a
steady call rate into the production path: AmiClient (framing, ordered queue) -> EventPump ->
CallService (normalize, tracker, one SQLite writer, WAL). For every call, the latency is
measured from the receive time of the AMI event that finished it to its commit.

    .venv/bin/python bench/e2e_commit.py [--calls 3000] [--rate 20]
        [--db .local/scale/crm-1000000.sqlite --refresher] [--synchronous NORMAL|FULL]
        [--fake-in-process] [--refresh-every 60]

``--db`` copies a generated state (bench/scale_pages.py keeps it) and sets the clock inside its
data (its last day is "today", with calls); ``--refresher`` runs the reports' refresher as the
server does (one untimed pass first, as on a server that has been running); ``--synchronous``
sets the writer's PRAGMA (the server's is FULL since #35: a power cut loses no saved commit).
The fake AMI server plays Asterisk from a process of its own (``--fake-in-process``: in this one,
sharing the measured event loop, as before stop 45).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ami_path import ami_path  # noqa: E402
from bench.tracker import scenario_calls  # noqa: E402
from crm import appeal_days, call_stats  # noqa: E402
from crm import db as crm_db  # noqa: E402
from crm.clock import SettableClock  # noqa: E402
from crm.db import Database  # noqa: E402
from pbx.process import settle_heap  # noqa: E402
from pbx.workers.report_refresher import PASS_SECONDS, WARM_DAYS, ReportRefresher  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def copy_to_disk(state: Path, to: Path) -> None:
    """The copy synced, as a server's database is: else the first checkpoint's sync writes the
    whole fresh copy (seconds of one commit that no running server pays)."""
    shutil.copyfile(state, to)
    with open(to, "rb+") as copy:
        os.fsync(copy.fileno())


async def run(calls: int, rate: float, state: Path | None, refresh: bool, synchronous: str | None,
              apart: bool, every: float) -> None:
    templates = [t for t in scenario_calls() if len(t) > 50]
    tmp = Path(tempfile.mkdtemp(prefix="clinic-pbx-bench-"))
    if state is not None:
        copy_to_disk(state, tmp / "crm.sqlite")
    if synchronous:
        crm_db.WRITER_SYNCHRONOUS = synchronous
    data_tz = ZoneInfo("Europe/Moscow")
    if state is not None or refresh:  # the generated data's clock (bench/scale_pages.py), imported only then
        from bench.scale_pages import NOW as data_now
        from bench.scale_pages import TZ as data_tz
    db = Database(tmp / "crm.sqlite", SettableClock(data_now) if state is not None else None)
    await db.open()
    print(f"state: {'a copy of ' + str(state) if state else 'empty'}; writer synchronous="
          f"{ {1: 'NORMAL', 2: 'FULL'}.get(await db.writer_synchronous())}; refresher {'on' if refresh else 'off'}")
    refresher = ReportRefresher(db, data_tz, every) if refresh else None
    if refresher is not None:
        t = time.perf_counter()
        await call_stats.refresh(db, data_tz)  # what a server that has been running has done
        today = datetime.fromtimestamp(db.clock.now(), data_tz).date()
        await appeal_days.warm(db, today - timedelta(days=WARM_DAYS), today, today, data_tz)
        print(f"untimed first refresh pass: {time.perf_counter() - t:.1f} s")
        refresher.start()  # a pass now, then every minute, as in the server
    print(f"the fake Asterisk: {'a process of its own' if apart else 'in this process'}")
    async with ami_path(db, tmp / "none.db", apart=apart) as path:
        service, pump = path.service, path.pump
        await asyncio.sleep(0.2)
        settle_heap()  # as the server does once started (pbx.app.settled_heap)
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
              f"p99 {pct(lat, 0.99):.1f} ms, max {max(lat):.1f} ms   (#31's goal at 1M with the refresher: "
              "p99 <= 20 ms, max <= 50 ms)")
        print(f"CPU of this process (AMI + tracker + SQLite{'' if apart else ' + the fake server'}): "
              f"{cpu / wall * 100:.0f}% "
              f"of one core; max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if refresher is not None:
        await refresher.stop()
        print(f"the refresher meanwhile, a pass every {every:.0f} s: {refresher.computed}")
    await db.close()
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--db", type=Path, default=None, help="a generated state to copy (bench/scale_pages.py)")
    ap.add_argument("--refresher", action="store_true", help="the reports' refresher running meanwhile")
    ap.add_argument("--synchronous", choices=("NORMAL", "FULL"), default=None)
    ap.add_argument("--fake-in-process", action="store_true",
                    help="the fake AMI server in the measured process (before stop 45: it shared the loop)")
    ap.add_argument("--refresh-every", type=float, default=PASS_SECONDS,
                    help="seconds between the refresher's passes (the server's: 60)")
    args = ap.parse_args()
    asyncio.run(run(args.calls, args.rate, args.db, args.refresher, args.synchronous, not args.fake_in_process,
                    args.refresh_every))


if __name__ == "__main__":
    main()

"""A clinic chain's write path: two branch boxes, each its own clinic-pbx process, saving their
calls into one shared database at the same time.

Each box is a separate OS process with the production path of e2e_commit.py (a local fake AMI
server streaming the recorded call scenarios, renumbered -> AmiClient -> EventPump ->
CallService -> the database), its linkedids in its own range (as Asterisk's ``systemname``
makes them). The same two boxes run twice in the same run: on one throwaway PostgreSQL cluster
(Debian's, tests/pg_cluster.py) and, as the baseline, on one SQLite file (two processes on one
file: SQLite's one writer at a time). Figures: the commit latency per box (the AMI event that
finished a call received -> committed), and the check that every call sent is stored once.

    .venv/bin/python bench/chain_commit.py [--calls 1500] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ami_path import ami_path  # noqa: E402
from bench.tracker import scenario_calls  # noqa: E402
from crm.storage import database  # noqa: E402
from tests.pg_cluster import running_cluster  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def box(location: str, base: int, calls: int, rate: float, start_at: float) -> tuple[list[float], int]:
    """One branch's process: ``calls`` calls at ``rate``/s from ``start_at`` (wall clock)."""
    templates = [t for t in scenario_calls() if len(t) > 50]
    db = database(Path(location) if "://" not in location else location)
    await db.open()
    async with ami_path(db, Path(tempfile.mkdtemp()) / "none.db") as path:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await path.send_calls(templates, calls, base, rate)
        await asyncio.sleep(1.0)
        await path.service.flush(120)
        latencies = [x * 1000 for x in path.service.commit_latency]
        records = path.service.stats["records"]
    await db.close()
    return latencies, records


def run_box(location: str, base: int, calls: int, rate: float, start_at: float) -> tuple[list[float], int]:
    return asyncio.run(box(location, base, calls, rate, start_at))


async def prepare(location: str) -> None:
    db = database(Path(location) if "://" not in location else location)
    await db.open()  # the schema, once, before the boxes start
    await db.close()


async def count(location: str) -> tuple[int, int]:
    db = database(Path(location) if "://" not in location else location)
    await db.open()
    row = await db.fetchone("SELECT COUNT(*), COUNT(DISTINCT linkedid) FROM calls")
    await db.close()
    return int(row[0]), int(row[1])


def measure(name: str, location: str, calls: int, rate: float) -> None:
    asyncio.run(prepare(location))
    start_at = time.time() + 3.0  # both boxes started and connected by then
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        futures = [pool.submit(run_box, location, base, calls, rate, start_at) for base in (2_000_000, 5_000_000)]
        results = [f.result() for f in futures]
    rows, distinct = asyncio.run(count(location))
    sent = 2 * calls
    print(f"\n{name}: 2 boxes x {calls} calls at {rate:g}/s each ({2 * rate:g} calls/s into one database)")
    for label, (lat, records) in zip(("box A", "box B"), results, strict=True):
        print(f"  {label}: {records} records, commit p50 {statistics.median(lat):.1f} ms,"
              f" p99 {pct(lat, 0.99):.1f} ms, max {max(lat):.1f} ms")
    everyone = [x for lat, _ in results for x in lat]
    print(f"  both: p99 {pct(everyone, 0.99):.1f} ms; stored {rows} rows for {sent} calls sent"
          f" ({sent - distinct} missing, {rows - distinct} doubled)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1500)
    ap.add_argument("--rate", type=float, default=50.0)
    args = ap.parse_args()
    with running_cluster() as cluster:
        measure("PostgreSQL (a chain's shared CRM)", cluster.new_database(), args.calls, args.rate)
    with tempfile.TemporaryDirectory() as tmp:
        measure("SQLite, one file (baseline)", str(Path(tmp) / "crm.sqlite"), args.calls, args.rate)


if __name__ == "__main__":
    main()

"""Soak: two hours of a clinic's calls compressed into minutes, through the real path (operator
trunk -> FastAGI lookup -> MixMonitor -> queue -> desk phones), with mixed outcomes:

- answered by 101 after one ring on the linear queue, talk 1-15 s (uniform);
- the ring-all queue: 101 answers while 102 rings and 103 is busy (legs missed and busy);
- callers who give up while the phones ring (missed calls).

Printed before, during and after: clinic-pbx RSS, open files, asyncio tasks, live calls; at the
end the calls in Asterisk's CDR and how many records are missing, doubled or disagree with it
(must be 0). Memory, files and tasks must come back to where they started.

    .venv/bin/python bench/soak.py [--calls 2000] [--rate 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from harness import BenchServer, bench_config, compare_with_cdr, health, open_files, proc_stats

from pbx.outbound.sipp import NEVER, start_desk_phone, start_operator_load
from pbx.settings import PROJECT_DIR

BENCH = PROJECT_DIR / ".local" / "bench-soak"
MIX = (  # (share, DID, kind)
    (0.5, "74951110002", "talk"),  # linear queue: 101 first
    (0.3, "74951110001", "talk"),  # ring-all: 101 answers, 102 rings, 103 busy
    (0.2, "74951110002", "give up"),
)


def figures(server: BenchServer) -> dict[str, float]:
    _, rss = proc_stats(server.pid)
    h = health(server.settings.web.port)
    return {"rss_mb": rss / 1e6, "files": open_files(server.pid), "tasks": h.get("tasks", -1),
            "live": h.get("live_calls", -1), "pending": h.get("calls_pending", -1)}


def show(label: str, f: dict[str, float]) -> None:
    print(f"{label:>8}: RSS {f['rss_mb']:.1f} MB, open files {f['files']:.0f}, asyncio tasks {f['tasks']:.0f}, "
          f"live calls {f['live']:.0f}, calls waiting to be saved {f['pending']:.0f}", flush=True)


async def main(args: argparse.Namespace) -> None:
    server = BenchServer(BENCH, bench_config(BENCH / "state", base=24000, web=28180))
    work = BENCH / "run"
    work.mkdir()
    settings = server.settings
    try:
        await server.init()
        await server.start()
        await asyncio.sleep(2)
        before = figures(server)
        show("before", before)
        c0, _ = proc_stats(server.pid)
        n = args.calls
        phones = [
            await start_desk_phone(settings, "101", work, ring_ms=1500, calls=0),
            await start_desk_phone(settings, "102", work, ring_ms=NEVER, calls=0),
            await start_desk_phone(settings, "103", work, behaviour="busy", calls=0),
        ]
        await asyncio.sleep(0.5)
        since = time.time()
        loads = []
        for i, (share, did, kind) in enumerate(MIX):
            count = round(n * share)
            callers = [f"+7925{random.randint(0, 9_999_999):07d}" for _ in range(count)]
            extra = {"cancel_after_ms": 700} if kind == "give up" else {"talk_ms_max": 15_000}
            loads.append(await start_operator_load(
                settings, did, work, callers, total=count, concurrent=60, rate=args.rate * share,
                talk_ms=1000, name=f"load{i}", **extra))
        t0 = time.monotonic()
        samples = []
        done = asyncio.gather(*(load.wait(n / args.rate + 600) for load in loads))
        while not done.done():
            await asyncio.sleep(min(30, n / args.rate / 6))
            if not done.done():
                samples.append(figures(server))
                show(f"{time.monotonic() - t0:.0f} s", samples[-1])
        rcs = await done
        wall = time.monotonic() - t0
        for p in phones:
            p.kill()
        await asyncio.sleep(5)  # the last records, CDR rows, and the live cards' 10 s linger
        await asyncio.sleep(10)
        after = figures(server)
        show("after", after)
        c1, _ = proc_stats(server.pid)
        calls, bad = compare_with_cdr(settings, since)
        print(f"{calls} calls in {wall:.0f} s ({calls / wall:.1f}/s; sipp rc {rcs}); clinic-pbx "
              f"{100 * (c1 - c0) / wall:.0f}% of one core; RSS {before['rss_mb']:.1f} -> "
              f"max {max(s['rss_mb'] for s in samples or [after]):.1f} -> {after['rss_mb']:.1f} MB; "
              f"open files {before['files']:.0f} -> {after['files']:.0f}; tasks {before['tasks']:.0f} -> "
              f"{after['tasks']:.0f}")
        print(f"records missing, doubled or disagreeing with the CDR: {len(bad)}")
        for line in bad[:10]:
            print("  ", line)
    finally:
        await server.stop()
        await server.stop_asterisk()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=5.0)
    asyncio.run(main(ap.parse_args()))

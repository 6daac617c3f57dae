"""Import of a clinic's MIS export at the size issue #33 names: 100,000 patients (a child in every
ten, represented by the previous patient) with 300,000 appointments for 200 doctors, as CSV in
Windows-1251 with ``;`` (or XLSX), through the server's own path (``pbx.jobs.mis_import``).

The import runs in a child process, so its peak memory (ru_maxrss) is the import's own; a big
file's rows are parsed in a process of the import's own, whose peak is printed too. Beside
it, a probe commits one small row every 50 ms (20 calls a second) on the same writer, as a call would: its p99 and
max latency show how long the import holds the writer. The baseline is the bare read of the
same files (decode + split, no parsing, no writes) in the same run.

    .venv/bin/python bench/mis_import.py [--patients 100000] [--appointments 300000] [--xlsx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm import import_files  # noqa: E402
from crm.db import Database  # noqa: E402
from crm.demo_export import (  # noqa: E402
    APPOINTMENT_HEADERS,
    DOCTOR_HEADERS,
    PATIENT_HEADERS,
    appointment_rows,
    doctor_rows,
    patient_rows,
    write_csv,
    write_xlsx,
)
from pbx.jobs.mis_import import import_file  # noqa: E402

TODAY = date(2026, 12, 7)
TZ = "Europe/Moscow"
DOCTORS = 200


def bare_read(path: Path) -> float:
    started = time.perf_counter()
    _, stream = import_files.rows(path)
    sum(1 for _ in stream)
    return time.perf_counter() - started


async def probe(db: Database, stop: asyncio.Event, out: list[float]) -> None:
    """A call's commit every 50 ms: the time each waited for the writer and committed."""
    async with db.transaction() as tx:
        await tx.execute("CREATE TABLE IF NOT EXISTS bench_probe (id INTEGER PRIMARY KEY, at REAL)")
    while not stop.is_set():
        started = time.perf_counter()
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO bench_probe (at) VALUES (?)", (started,))
        out.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)


async def import_one(db: Database, path: Path, kind: str) -> tuple[float, dict]:
    started = time.perf_counter()
    run = await import_file(db, path, kind, today=TODAY, time_zone=TZ)
    return time.perf_counter() - started, run


async def child(folder: Path, files: dict[str, str]) -> None:
    db = Database(folder / "crm.sqlite")
    await db.open()
    stop, waits = asyncio.Event(), []
    probing = asyncio.create_task(probe(db, stop, waits))
    figures: dict[str, object] = {}
    for kind in ("doctors", "patients", "appointments"):
        seconds, run = await import_one(db, Path(files[kind]), kind)
        figures[kind] = {"seconds": seconds, "state": run["state"], "inserted": run["inserted"],
                         "rejected": run["rejected"]}
    # the same files again: idempotent, nothing changes
    again = {}
    for kind in ("doctors", "patients", "appointments"):
        seconds, run = await import_one(db, Path(files[kind]), kind)
        again[kind] = {"seconds": seconds, "inserted": run["inserted"], "updated": run["updated"],
                       "unchanged": run["unchanged"]}
    stop.set()
    await probing
    await db.close()
    waits.sort()
    figures["again"] = again
    figures["probe"] = {"commits": len(waits), "p50_ms": statistics.median(waits) * 1000,
                        "p99_ms": waits[int(len(waits) * 0.99)] * 1000, "max_ms": waits[-1] * 1000}
    figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["parser_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # its parsing process
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--appointments", type=int, default=300_000)
    parser.add_argument("--xlsx", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        asyncio.run(child(Path(spec["folder"]), spec["files"]))
        return
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        write = write_xlsx if args.xlsx else write_csv
        ext = "xlsx" if args.xlsx else "csv"
        files = {
            "doctors": write(folder / f"doctors.{ext}", DOCTOR_HEADERS, doctor_rows(DOCTORS)),
            "patients": write(folder / f"patients.{ext}", PATIENT_HEADERS, patient_rows(args.patients)),
            "appointments": write(folder / f"appointments.{ext}", APPOINTMENT_HEADERS,
                                  appointment_rows(args.appointments, args.patients, DOCTORS, TODAY)),
        }
        sizes = {k: p.stat().st_size / 1e6 for k, p in files.items()}
        bare = {k: bare_read(p) for k, p in files.items()}
        spec = json.dumps({"folder": tmp, "files": {k: str(p) for k, p in files.items()}})
        out = subprocess.run([sys.executable, __file__, "--child", spec], check=True, capture_output=True, text=True)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"MIS import, {ext.upper()}: {args.patients} patients, {args.appointments} appointments, {DOCTORS} doctors")
    total = 0.0
    for kind in ("doctors", "patients", "appointments"):
        f = figures[kind]
        total += f["seconds"]
        print(f"  {kind:13s} {sizes[kind]:6.1f} MB  import {f['seconds']:6.2f} s  bare read {bare[kind]:5.2f} s"
              f"  ratio {f['seconds'] / max(bare[kind], 1e-9):5.1f}x  {f['state']}, inserted {f['inserted']},"
              f" rejected {f['rejected']}")
    print(f"  first import in all: {total:.1f} s; peak memory of the importing process {figures['peak_mb']:.0f} MB,"
          f" of its parsing process {figures['parser_peak_mb']:.0f} MB")
    again = figures["again"]
    print("  the same files again: " + ", ".join(
        f"{k} {v['seconds']:.1f} s (inserted {v['inserted']}, updated {v['updated']}, unchanged {v['unchanged']})"
        for k, v in again.items()))
    p = figures["probe"]
    print(f"  a commit every 50 ms beside it: {p['commits']} commits, p50 {p['p50_ms']:.1f} ms,"
          f" p99 {p['p99_ms']:.1f} ms, max {p['max_ms']:.1f} ms")


if __name__ == "__main__":
    main()

"""Applying a telephony change on a configured clinic (issue #29): 200 desk phones, 20 clinic
numbers and 5 providers in the panel, changed while calls talk.

``clinic-pbx run`` on bench ports with its own embedded Asterisk; the clinic's telephony is put in
its CRM before it starts (the phones with server-made passwords, the numbers with hours, the
providers known by address so that no registration waits on a network). Then the same changes
are made through the panel, as an integrator does: a phone's label (pjsip.conf), a number's queue
(the dialplan), a new phone and its removal (pjsip.conf and queues.conf). Timed per change: the
panel's POST, which returns once the files are rendered and written, the modules reloaded and
Asterisk confirmed every object (render + reload + confirmation). First with no call up (the
baseline), then with ``--calls`` calls talking through the demo's linear queue; printed: the
median and worst latency of each, their ratio, and after the calls, how many were cut (a CDR
billsec shorter than the talk) and how many records disagree with Asterisk's CDR.

    .venv/bin/python bench/telephony_apply.py [--calls 50] [--talk 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from pathlib import Path

from harness import BenchServer, bench_config, compare_with_cdr, health

from crm import telephony as store
from crm.rules.hours import WEEKDAYS
from crm.rules.telephony import ClinicNumber, check_provider, md5_cred
from crm.storage import database
from pbx.outbound.sipp import start_desk_phone, start_operator_load
from pbx.settings import PROJECT_DIR

BENCH = PROJECT_DIR / ".local" / "bench-telephony"
PHONES, NUMBERS, PROVIDERS = 200, 20, 5


async def seed(server: BenchServer) -> None:
    """The clinic's telephony, written before the server starts (one writer at a time)."""
    db = database(server.settings.db_location)
    await db.open()
    try:
        for i in range(PROVIDERS):
            await store.save_provider(db, check_provider({
                "name": f"Провайдер {i + 1}", "server": f"10.99.0.{i + 1}", "auth": "ip",
                "addresses": f"10.99.{i + 1}.0/24", "max_calls": "100", "outgoing": "1" if i == 0 else ""}), 0.0)
        for i in range(NUMBERS):
            hours = f"{WEEKDAYS[i % 7]} 00:00-24:00; {WEEKDAYS[(i + 1) % 7]} 08:00-21:00"
            await store.save_number(db, ClinicNumber(f"7495200{i:04d}", "reception-ringall", hours, "31.12.2026",
                                                     "", "", i % 2 == 0), 0.0)
        async with db.transaction() as tx:  # 200 phones: extensions 1000-1199, in the ring-all queue
            for i in range(PHONES):
                ext = str(1000 + i)
                await tx.execute("INSERT INTO desk_phones (extension, label, queues, md5_cred) VALUES (?, ?, ?, ?)",
                                 (ext, f"Телефон {i}", "reception-ringall", md5_cred(ext, f"pw-{i}")))
            await tx.execute("UPDATE telephony_revision SET revision = revision + 1")
    finally:
        await db.close()


async def timed(panel, **form: str) -> float:
    t0 = time.perf_counter()
    status = await panel.post("/settings/telephony", **form)
    took = time.perf_counter() - t0
    assert status in (200, 302), status
    return took


async def changes(server: BenchServer, rounds: int) -> list[float]:
    """Each round: a phone's label, a number's queue, a new phone, its removal."""
    panel = await server.panel()
    took = []
    try:
        for r in range(rounds):
            took.append(await timed(panel, action="phone_save", extension="1007", label=f"Ресепшн {r}",
                                    queues="reception-ringall"))
            took.append(await timed(panel, action="number_save", did="74952000003",
                                    queue="reception-linear" if r % 2 == 0 else "reception-ringall"))
            took.append(await timed(panel, action="phone_save", extension="1999", label="Новый",
                                    queues="reception-linear"))
            took.append(await timed(panel, action="phone_delete", extension="1999"))
            applied = health(server.settings.web.port).get("telephony_applied")
            assert applied is True, f"Asterisk did not confirm round {r}: {applied}"
    finally:
        await panel.close()
    return took


async def calls_up(port: int, wanted: int, timeout: float = 60.0) -> int:
    """The calls up once ``wanted`` are (or the timeout passed): the state the changes meet."""
    deadline = time.monotonic() + timeout
    up = 0
    for _ in range(int(timeout * 2)):
        up = int(health(port).get("live_calls", 0))
        if up >= wanted or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return up


def line(name: str, took: list[float]) -> str:
    return f"{name}: median {1000 * statistics.median(took):.0f} ms, worst {1000 * max(took):.0f} ms ({len(took)} changes)"


async def main(args: argparse.Namespace) -> None:
    server = BenchServer(BENCH, bench_config(BENCH / "state", base=27000, web=28180))
    await server.init()
    await seed(server)
    await server.start()
    try:
        idle = await changes(server, args.rounds)
        print(f"{PHONES} phones, {NUMBERS} numbers, {PROVIDERS} providers in the panel")
        print(line("no call up (baseline)", idle))
        settings = server.settings
        work = BENCH / "runs"
        work.mkdir(parents=True, exist_ok=True)
        phone = await start_desk_phone(settings, "101", work, ring_ms=500, calls=args.calls * 2)
        callers = [f"+7926{random.randint(0, 9_999_999):07d}" for _ in range(args.calls)]
        since = time.time()
        load = await start_operator_load(settings, "74951110002", work, callers, total=args.calls,
                                         concurrent=args.calls, rate=max(5.0, args.calls / 10),
                                         talk_ms=args.talk * 1000)
        up = await calls_up(settings.web.port, args.calls)
        busy = await changes(server, args.rounds)
        print(line(f"{up} calls talking", busy))
        print(f"ratio (calls up / baseline): median {statistics.median(busy) / statistics.median(idle):.2f}, "
              f"worst {max(busy) / max(idle):.2f}")
        rc = await load.wait(args.talk * 3 + 120)
        phone.kill()
        await asyncio.sleep(3)
        calls, bad = compare_with_cdr(settings, since)
        cut = cut_calls(settings.cdr_db_path, since, args.talk)
        print(f"after the calls: {calls} calls (sipp rc {rc}), cut short: {len(cut)}, "
              f"records disagreeing with the CDR: {len(bad)}")
        for item in (cut + bad)[:10]:
            print("  ", item)
    finally:
        await server.stop()
        await server.stop_asterisk()


def cut_calls(cdr: Path, since: float, talk: int) -> list[str]:
    """Answered calls whose billsec is shorter than the talk the caller held (-2 s for the
    answer's timing): a reload that dropped a call shows here."""
    import sqlite3

    con = sqlite3.connect(f"file:{cdr}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT linkedid, billsec FROM cdr WHERE start_u >= ? AND disposition = 'ANSWERED'"
                           " AND channel LIKE 'PJSIP/operator-%'", (int(since) - 1,)).fetchall()
    finally:
        con.close()
    return [f"{lid}: billsec {sec} < {talk}" for lid, sec in rows if int(sec) < talk - 2]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--talk", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(ap.parse_args()))

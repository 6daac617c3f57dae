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
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbx.settings import PROJECT_DIR, load_settings  # noqa: E402
from pbx.sipp import NEVER, start_desk_phone, start_operator_load  # noqa: E402
from tests.integration.helpers import assert_matches_cdr  # noqa: E402

BENCH = PROJECT_DIR / ".local" / "bench-load"
CONFIG = """
state_dir = "{state}"
log_level = "WARNING"
[web]
port = 28080
[asterisk]
sip_port = 26060
ami_port = 26038
http_port = 26088
agi_port = 26573
rtp_start = 33000
rtp_end = 34999
operator_port = 26090
phone_port_base = 26070
ring_seconds = 10
one_call_per_phone = false
"""


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a process."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    rss = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as r:
            return json.loads(r.read())
    except Exception:
        return {}


def records(db: Path, since: str) -> dict[str, dict]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    out = {}
    for row in con.execute("SELECT * FROM calls WHERE started_at >= ?", (since,)):
        call = dict(row)
        call["legs"] = [dict(r) for r in con.execute(
            "SELECT extension, outcome FROM call_legs WHERE call_id = ?", (row["id"],))]
        out[row["linkedid"]] = call
    con.close()
    return out


def cdr_by_linkedid(cdr: Path, since: float) -> dict[str, list[dict]]:
    con = sqlite3.connect(f"file:{cdr}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    out: dict[str, list[dict]] = {}
    for row in con.execute("SELECT * FROM cdr WHERE CAST(start_u AS REAL) >= ?", (since,)):
        out.setdefault(row["linkedid"], []).append(dict(row))
    con.close()
    return out


async def level(settings, n: int, talk_s: int, workdir: Path, server_pid: int, ast_pid: int) -> None:
    phones = [await start_desk_phone(settings, "101", workdir, ring_ms=1000, calls=n * 2)]
    phones += [await start_desk_phone(settings, ext, workdir, ring_ms=NEVER, calls=n * 2)
               for ext in ("102", "103")]
    await asyncio.sleep(0.5)
    rate = max(5.0, n / 10)  # reach the level in ~10 s
    total = n * 2  # every call slot is used twice
    callers = [f"+7926{random.randint(0, 9_999_999):07d}" for _ in range(total)]
    since_wall = time.time()
    since_iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since_wall - 1))
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
    ours = records(settings.db_path, since_iso)
    theirs = cdr_by_linkedid(settings.cdr_db_path, since_wall - 1)
    disagree = 0
    for lid, rows in theirs.items():
        call = ours.get(lid)
        try:
            assert call is not None, "no record"
            call["legs"] = [{"extension": leg["extension"]} for leg in call["legs"]]
            assert_matches_cdr(call, rows)
        except AssertionError:
            disagree += 1
    print(f"{n:4d} simultaneous: {len(theirs)} calls in {wall:.0f} s (sipp rc {rc}); "
          f"clinic-pbx {100 * (c1 - c0) / wall:.0f}% CPU, {rss / 1e6:.0f} MB RSS; "
          f"Asterisk {100 * (a1 - a0) / wall:.0f}% CPU, {arss / 1e6:.0f} MB; "
          f"records disagreeing with the CDR: {disagree}")


async def main(args) -> None:
    if BENCH.exists():
        shutil.rmtree(BENCH / "runs", ignore_errors=True)
    BENCH.mkdir(parents=True, exist_ok=True)
    cfg = BENCH / "bench.toml"
    cfg.write_text(CONFIG.format(state=BENCH / "state"))
    settings = load_settings(cfg)
    env = dict(os.environ, CLINIC_PBX_CONFIG=str(cfg))
    clinic = PROJECT_DIR / ".venv" / "bin" / "clinic-pbx"
    subprocess_init = await asyncio.create_subprocess_exec(str(clinic), "init", "--demo", env=env,
                                                           stdout=asyncio.subprocess.DEVNULL)
    await subprocess_init.wait()
    server = await asyncio.create_subprocess_exec(str(clinic), "run", env=env,
                                                  stdout=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(100):
            if health(settings.web.port).get("ok"):
                break
            await asyncio.sleep(0.3)
        else:
            raise SystemExit("clinic-pbx did not come up")
        ast_pid = int((settings.asterisk_var / "run" / "clinic-pbx-asterisk.pid").read_text())
        print(f"clinic-pbx pid {server.pid}, Asterisk pid {ast_pid}; calls of {args.talk} s, "
              f"linear queue, FastAGI lookup + MixMonitor recording on every call")
        for n in [int(x) for x in args.levels.split(",")]:
            (BENCH / "runs" / str(n)).mkdir(parents=True, exist_ok=True)
            await level(settings, n, args.talk, BENCH / "runs" / str(n), server.pid, ast_pid)
            await asyncio.sleep(35)  # let PJSIP transactions of this level expire
    finally:
        server.send_signal(signal.SIGTERM)
        await server.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="50,100,200")
    ap.add_argument("--talk", type=int, default=20)
    asyncio.run(main(ap.parse_args()))

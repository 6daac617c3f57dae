"""Pages and reports on a year of calls: a generated CRM (seeded; ``--calls`` 100 000 by default,
1 000 000 for a chain's scale: patients a tenth of the calls, 2.5 legs a call, appointments a
fifth, tags and comments on a tenth), kept under ``.local/scale/`` for the next run, and the
panel served in this process (the real aiohttp app, no Asterisk). Each page and the bare indexed
SQL that reads the same rows are timed in turns: one untimed round (as on a running server:
template compiled, caches warm), then 3 × ROUNDS rounds (ROUNDS for a page over 0.1 s, 3 for one
of seconds); the page's best and median and the bare reads' best are printed with their ratio,
and the process's peak RSS. Figures, never assertions: see bench/README.md.

    .venv/bin/python -u bench/scale_pages.py [--calls 1000000] [--fresh] [--only csv] [--busy 5]

``--only`` times the pages whose name contains the text (the stored days are then brought up to
date as the server would, not computed again from nothing). ``--busy RATE``: a running server's
background work meanwhile, on a copy of the state (bench/busy.py): calls at RATE a second through
the AMI path, each starting "now" on the data's clock, and the reports' refresher.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import random
import resource
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from bench import scale_pg  # noqa: E402
from bench.busy import busy  # noqa: E402
from bench.e2e_commit import copy_to_disk  # noqa: E402
from crm import appeal_days, call_stats, tokens, users  # noqa: E402
from crm.storage import database  # noqa: E402
from pbx.app import SERVICES, Adapters, build_app  # noqa: E402
from pbx.process import settle_heap  # noqa: E402
from pbx.settings import PROJECT_DIR, AsteriskSettings, Settings, with_generated_secrets  # noqa: E402
from pbx.workers.report_refresher import WARM_DAYS  # noqa: E402
from tests.pg_cluster import running_cluster  # noqa: E402

TZ = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 12, 1, 12, tzinfo=TZ).timestamp()
YEAR = 365 * 86400
ADMINS = 6
ROUNDS = 7  # timed rounds of a page and its bare reads


class DataClock:
    """The generated data's clock: ``NOW`` (noon of the data's last day, so "today" has half a
    day of calls and the last 24 hours a full day's) when the run starts, then running."""

    def __init__(self) -> None:
        self.started = time.time()

    def now(self) -> float:
        return NOW + (time.time() - self.started)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


async def schema(path: Path | str) -> None:
    db = database(path)
    await db.open()
    await db.close()


def generate(path: Path, n_calls: int, seed: int = 7) -> None:
    """The data set, written straight with sqlite3 in one transaction (the server's own write
    path would take hours at 1M; the rows are what it writes)."""
    rnd = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    t0 = time.perf_counter()
    with con:
        con.execute("INSERT INTO branches (id, name) VALUES (1, 'Клиника на Тверской')")
        con.executemany("INSERT INTO doctors (id, branch_id, full_name, specialty) VALUES (?, 1, ?, ?)",
                        [(i, f"Врач {i}", s) for i, s in enumerate(("терапевт", "хирург", "ортодонт", "гигиенист"), 1)])
        con.executemany("INSERT INTO users (id, login, full_name, role, password_hash, created_at) VALUES (?, ?, ?,"
                        " 'administrator', 'x', '2026-01-01')",
                        [(i, f"admin{i}", f"Администратор {i}") for i in range(1, ADMINS + 1)])
        con.executemany("INSERT INTO clinic_numbers (did, ad_channel) VALUES (?, ?)",
                        [("74951110001", "Сайт"), ("74951110002", "ПроДокторов")])
        n_patients = max(10, n_calls // 10)
        con.executemany("INSERT INTO patients (id, last_name, first_name, created_at) VALUES (?, ?, ?, '2025-01-01')",
                        ((i, f"Фамилия{i}", "Имя") for i in range(1, n_patients + 1)))
        con.executemany("INSERT INTO patient_phones (patient_id, e164, kind) VALUES (?, ?, 'mobile')",
                        ((i, f"+7916{i:07d}") for i in range(1, n_patients + 1)))
        calls, legs, tags, comments = [], [], [], []
        known: list[tuple[float, int]] = []  # (start, patient) of calls from patients, for bookings near them
        for i in range(1, n_calls + 1):
            start = NOW - rnd.random() * YEAR
            pid = rnd.randint(1, n_patients) if rnd.random() < 0.8 else None
            phone = f"+7916{pid:07d}" if pid else f"+7903{rnd.randrange(10**7):07d}"
            kind = rnd.choices(("incoming", "missed", "outgoing", "outgoing_unanswered"), (55, 15, 25, 5))[0]
            answered = kind in ("incoming", "outgoing")
            talk = rnd.uniform(20, 300) if answered else 0.0
            user = rnd.randint(1, ADMINS)
            direction = "outgoing" if kind.startswith("outgoing") else "incoming"
            if pid and answered and len(known) < 500_000:
                known.append((start, pid))
            end = start + 5 + talk
            calls.append((i, f"{start:.0f}.{i}", direction, kind, "74951110001" if rnd.random() < 0.7 else "74951110002",
                          phone if direction == "incoming" else "", phone if direction == "outgoing" else "", phone,
                          str(100 + user) if answered else "", user if answered else None, iso(start),
                          iso(start + 5) if answered else None, iso(end), 5.0, talk, "patient" if pid else "unknown",
                          pid, user if direction == "outgoing" else None, iso(end), start, end))
            for leg in range(rnd.choice((1, 2, 2, 3, 4))):
                legs.append((i, str(101 + leg % 3), "answered" if answered and leg == 0 else "no_answer",
                             int(kind == "missed"), iso(start)))
            if rnd.random() < 0.1:
                tags.append((f"{start:.0f}.{i}", rnd.choice(("Дорого", "Нет окон", "Имплантация")), iso(end)))
            if rnd.random() < 0.1:
                comments.append((f"{start:.0f}.{i}", "wants_booking", pid, "Хочет записаться", iso(end)))
            if len(calls) >= 50_000:
                _flush(con, calls, legs, tags, comments)
        _flush(con, calls, legs, tags, comments)
        appts = []
        for _ in range(n_calls // 5):
            if known and rnd.random() < 0.3:  # booked around a call of the patient's: a conversion
                call_start, patient = rnd.choice(known)
                created = call_start + rnd.uniform(-20, 40) * 60
            else:
                created, patient = NOW - rnd.random() * YEAR, rnd.randint(1, n_patients)
            starts = created + rnd.uniform(1, 30) * 86400
            status = "completed" if starts < NOW and rnd.random() < 0.7 else ("cancelled" if rnd.random() < 0.2 else
                                                                              "unconfirmed")
            appts.append((patient, rnd.randint(1, 4), datetime.fromtimestamp(starts, TZ)
                          .strftime("%Y-%m-%dT%H:%M"), datetime.fromtimestamp(starts + 1800, TZ).strftime("%Y-%m-%dT%H:%M"),
                          starts, starts + 1800, status, iso(created), created, iso(created)))
        con.executemany("INSERT INTO appointments (patient_id, doctor_id, branch_id, starts_at, ends_at, starts_ts,"
                        " ends_ts, status, created_at, created_ts, updated_at) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                        appts)
        # as an upgrade from before the daily aggregates finds it (migration 0021): one span to compute
        con.execute("DELETE FROM report_dirty")
        con.execute("INSERT INTO report_dirty SELECT MIN(started_ts), MAX(started_ts) FROM calls")
    con.execute("ANALYZE")
    con.close()
    print(f"generated {n_calls} calls in {time.perf_counter() - t0:.0f} s: {path} ({path.stat().st_size / 2**20:.0f} MB)")


def _flush(con: sqlite3.Connection, calls: list, legs: list, tags: list, comments: list) -> None:
    con.executemany(
        "INSERT INTO calls (id, linkedid, direction, call_type, did, caller_raw, callee_raw, phone_e164,"
        " answered_by_ext, answered_by_user, started_at, answered_at, ended_at, wait_seconds, talk_seconds,"
        " caller_kind, patient_id, originated_by, created_at, started_ts, ended_ts, source)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ami')", calls)
    con.executemany("INSERT INTO call_legs (call_id, extension, outcome, missed, started_at) VALUES (?, ?, ?, ?, ?)",
                    legs)
    con.executemany("INSERT INTO call_tags (linkedid, label, created_at) VALUES (?, ?, ?)", tags)
    con.executemany("INSERT INTO call_comments (linkedid, caller_type, patient_id, text, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", comments)
    for batch in (calls, legs, tags, comments):
        batch.clear()


def peak_rss() -> float:
    """This process's peak RSS since the last ``reset_peak()`` (Linux's VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start the peak RSS again from the current RSS (``clear_refs`` 5), so that each page shows
    its own peak, not the one-off computation of the stored days before it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


_connections: dict[Path, sqlite3.Connection] = {}


def bare(path: Path, reads: list[tuple[str, tuple]]) -> float:
    """One pass of the bare indexed reads the page needs (all rows fetched): one for most pages;
    for the history, one per table whose rows a line shows. Runs in the child process, on a
    connection kept open between passes (as the server's are)."""
    con = _connections.get(path)
    if con is None:
        con = _connections[path] = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    t0 = time.perf_counter()
    for sql, params in reads:
        con.execute(sql, params).fetchall()
    return time.perf_counter() - t0


def shown_rows(calls_sql: str, params: tuple) -> list[tuple[str, tuple]]:
    """The bare reads of a history line's rows: the calls, and their legs (who missed it), tags,
    comments, patients and the patients' appointments, each table joined to the same calls on
    its index."""
    return [(f"SELECT * FROM ({calls_sql}) c", params),
            (f"SELECT l.* FROM ({calls_sql}) c JOIN call_legs l ON l.call_id = c.id", params),
            (f"SELECT t.* FROM ({calls_sql}) c JOIN call_tags t ON t.linkedid = c.linkedid", params),
            (f"SELECT m.* FROM ({calls_sql}) c JOIN call_comments m ON m.linkedid = c.linkedid", params),
            (f"SELECT p.* FROM ({calls_sql}) c JOIN call_candidates k ON k.call_id = c.id"
             " JOIN patients p ON p.id = k.patient_id", params),
            # «Был записан» and «Конверсия»: the appointments of the numbers' patients
            (f"SELECT a.patient_id, a.created_ts, a.starts_ts, a.status FROM ({calls_sql}) c"
             " JOIN patient_phones o ON o.e164 = c.phone_e164"
             " JOIN appointments a ON a.patient_id = o.patient_id", params)]


def precompute(path: Path | str, again: bool) -> list[str]:
    """The stored days (reports' aggregates, «История обращений»), computed in a child process as
    the server's background pass does after the upgrade (``again``: every day from nothing), so
    the server measured afterwards starts as after a restart. Returns lines to print."""
    async def run() -> list[str]:
        db = database(path, DataClock())
        await db.open()
        lines = []
        try:
            if again:
                async with db.transaction() as tx:  # as after the upgrade or a new time zone
                    await tx.execute("DELETE FROM report_meta")
                    await tx.execute("DELETE FROM appeal_days")
            t0 = time.perf_counter()
            days = await call_stats.refresh(db, TZ)
            lines.append(f"daily aggregates: {days} clinic days computed in {time.perf_counter() - t0:.1f} s,"
                         f" peak {peak_rss():.0f} MB")
            reset_peak()
            t0 = time.perf_counter()
            today = datetime.fromtimestamp(db.clock.now(), TZ).date()  # the server's today, as its pages see it
            days = await appeal_days.warm(db, today - timedelta(days=WARM_DAYS), today, today, TZ)
            lines.append(f"«История обращений»: {days} clinic days computed and stored in"
                         f" {time.perf_counter() - t0:.1f} s, peak {peak_rss():.0f} MB")
        finally:
            await db.close()
        return lines
    return asyncio.run(run())


def bare_reads(location: Path | str, reads: list[tuple[str, tuple]]) -> float:
    return scale_pg.bare(location, reads) if isinstance(location, str) else bare(location, reads)


async def measure(path: Path | str, n_calls: int, size_mb: float, only: str = "", rate: float = 0.0) -> None:
    """The pages on the CRM at ``path``: the SQLite file, or a PostgreSQL URL (``--postgresql``)."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as child:
        for line in await asyncio.get_running_loop().run_in_executor(child, precompute, path, not only):
            print(line, "(once after the upgrade, in a child process here; the server does it in the background)")
    on_pg = isinstance(path, str)
    state = PROJECT_DIR / ".local" / "scale" / f"state-{n_calls}{'-pg' if on_pg else ''}"
    settings = with_generated_secrets(Settings(state_dir=state, database=path, time_zone="Europe/Moscow",
                                               asterisk=AsteriskSettings(embedded=False, ami_port=1, http_port=1,
                                                                         agi_port=0)))
    clock = DataClock()
    app = build_app(settings, adapters=Adapters.offline(), run_escort=False, clock=clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        db = app[SERVICES].db
        if await users.authenticate(db, "boss", "scale-bench-pw") is None:
            await users.create_user(db, "boss", "scale-bench-pw", role="director", history_access="read")
        async with db.transaction() as tx:  # the last run's token
            await tx.execute("DELETE FROM api_tokens WHERE name = 'scale-bench'")
        api_token = await tokens.create_token(db, "scale-bench", expires_ts=time.time() + 3600)
        from tests.unit.panel_client import log_in

        await log_in(client, "boss", "scale-bench-pw")
        settle_heap()  # as the server does once started (run_escort=False leaves it to us)
        background = contextlib.AsyncExitStack()
        work = await background.enter_async_context(busy(db, TZ, rate, clock.now() - time.time(), state / "none.db"))
        end = datetime.fromtimestamp(NOW, TZ).date()
        month, year = (end - timedelta(days=29)).isoformat(), (end - timedelta(days=364)).isoformat()
        m0 = datetime.combine(end - timedelta(days=29), datetime.min.time(), TZ).timestamp()
        y0 = datetime.combine(end - timedelta(days=364), datetime.min.time(), TZ).timestamp()
        e = end.isoformat()
        scan_month = ("SELECT started_ts, call_type, talk_seconds, answered_by_user FROM calls"
                      " WHERE started_ts >= ? AND started_ts < ?", (m0, NOW + 86400))
        scan_year = (scan_month[0], (y0, NOW + 86400))
        pid = 4242 if n_calls >= 50_000 else 5
        pages = [
            ("«Эффективность администраторов», month", f"/reports?report=efficiency&since={month}&until={e}", scan_month),
            ("«Эффективность администраторов», year", f"/reports?report=efficiency&since={year}&until={e}", scan_year),
            ("«Количество звонков по дням», month", f"/reports?report=days&since={month}&until={e}", scan_month),
            ("«Количество звонков по дням», year", f"/reports?report=days&since={year}&until={e}", scan_year),
            ("«Обработка пропущенных», year", f"/reports?report=missed&since={year}&until={e}", scan_year),
            ("«Метки звонков», year", f"/reports?report=tags&since={year}&until={e}", scan_year),
            ("history /calls (100 rows)", f"/calls?since={month}&until={e}",
             shown_rows("SELECT * FROM calls WHERE started_ts >= ? ORDER BY started_ts DESC LIMIT 100", (m0,))),
            ("history /calls, rows 4901-5000", f"/calls?since={month}&until={e}&offset=4900",
             shown_rows("SELECT * FROM calls WHERE started_ts >= ? ORDER BY started_ts DESC LIMIT 100 OFFSET 4900",
                        (m0,))),
            ("/api/v1/calls?limit=1000", f"/api/v1/calls?since={month}&until={e}&limit=1000",
             shown_rows("SELECT * FROM calls WHERE started_ts >= ? ORDER BY started_ts DESC LIMIT 1000", (m0,))),
            ("/calls.csv, month", f"/calls.csv?since={month}&until={e}",
             shown_rows("SELECT * FROM calls WHERE started_ts >= ?", (m0,))),
            ("patient card", f"/patients/{pid}", ("SELECT * FROM calls WHERE phone_e164 = ?", (f"+7916{pid:07d}",))),
            ("home page", "/", ("SELECT * FROM calls WHERE started_ts >= ?", (NOW - 86400,))),
            ("«История обращений», one patient", f"/appeals?patient={pid}",
             ("SELECT * FROM calls WHERE patient_id = ?", (pid,))),
            ("«История обращений», month", f"/appeals?since={month}&until={e}", scan_month),
            ("«История обращений», year", f"/appeals?since={year}&until={e}", scan_year),
        ]
        # the bare scans run in a child process: their rows must not count in this process's RSS
        scans = concurrent.futures.ProcessPoolExecutor(max_workers=1)
        print(f"\n{n_calls} calls on {'PostgreSQL' if on_pg else 'SQLite'} ({size_mb:.0f} MB); best / median of"
              f" {3 * ROUNDS} rounds ({ROUNDS} for a page over 0.1 s, 3 over 1 s) after an untimed one, each load"
              " followed by the bare reads")
        print(f"{'page':44} {'best s':>8} {'median s':>9} {'bare s':>8} {'÷ bare':>8} {'peak MB':>8}"
              "  (peak: during that page's loads)")
        for name, url, reads in pages:
            if only and not any(o in name for o in only.split("|")):
                continue
            if isinstance(reads, tuple):
                reads = [reads]
            gc.collect()
            reset_peak()
            # the page and its bare reads in turns, each round both: this machine's speed wanders
            # (the same reads 2.8 ms and 5.4 ms a few seconds apart), so both are taken at the
            # same moments and their bests compared; the first round, untimed, warms both (a
            # running server has compiled the page's template and warmed its connections)
            times, bares = [], []
            rounds = ROUNDS
            for i in itertools.count():  # round 0 untimed; it sets how many follow
                t0 = time.perf_counter()
                resp = await client.get(url, headers={"Authorization": f"Bearer {api_token}"} if "/api/" in url else {})
                async for _ in resp.content.iter_chunked(1 << 16):  # read and dropped, as a browser saves it
                    pass
                took = time.perf_counter() - t0
                if resp.status != 200:
                    print(f"  {url}: HTTP {resp.status}")
                    break
                b = await asyncio.get_running_loop().run_in_executor(scans, bare_reads, path, reads)
                if i:
                    times.append(took)
                    bares.append(b)
                    if len(times) == rounds:
                        break
                else:  # a page of seconds (the CSV): fewer rounds; of milliseconds: more, a
                    # single hiccup of the machine is its size
                    rounds = 3 if took > 1 else 3 * ROUNDS if took < 0.1 else ROUNDS
            if not times:
                continue
            print(f"{name:44} {min(times):8.3f} {statistics.median(times):9.3f} {min(bares):8.4f}"
                  f" {min(times) / min(bares):8.2f} {peak_rss():8.0f}")
        scans.shutdown()
        if work is not None:
            print(f"meanwhile: {work[0].service.stats['records']} calls committed at {rate:g}/s, the refresher's"
                  f" passes {work[1].computed}")
        await background.aclose()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the server's process over the whole run (the bare scans ran in a child; the"
              f" generator and the stored days' computation count when they ran in this run): {rss:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--fresh", action="store_true", help="generate again even if kept")
    ap.add_argument("--only", default="", help="time only the pages whose name contains this (a|b: either)")
    ap.add_argument("--busy", type=float, default=0.0, metavar="RATE",
                    help="meanwhile calls at RATE a second through the AMI path, and the refresher's passes")
    ap.add_argument("--postgresql", action="store_true",
                    help="then the same pages with the CRM copied into a throwaway PostgreSQL cluster")
    args = ap.parse_args()
    folder = PROJECT_DIR / ".local" / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crm-{args.calls}.sqlite"
    if args.fresh or not path.exists():
        for p in folder.glob(f"crm-{args.calls}.sqlite*"):
            p.unlink()
        asyncio.run(schema(path))
        generate(path, args.calls)
    if args.busy:  # calls are written: into a copy, the kept state stays as generated
        copy = folder / f"busy-{args.calls}.sqlite"
        for p in folder.glob(f"busy-{args.calls}.sqlite*"):  # a killed run's, its WAL above all
            p.unlink()
        copy_to_disk(path, copy)
        try:
            asyncio.run(measure(copy, args.calls, path.stat().st_size / 2**20, args.only, args.busy))
        finally:
            for p in folder.glob(f"busy-{args.calls}.sqlite*"):
                p.unlink()
    else:
        asyncio.run(measure(path, args.calls, path.stat().st_size / 2**20, args.only))
    if args.postgresql:
        with running_cluster() as cluster:
            url = cluster.new_database()
            asyncio.run(schema(url))
            print(scale_pg.load(path, url))
            asyncio.run(measure(url, args.calls, scale_pg.size_mb(url), ""))


if __name__ == "__main__":
    main()

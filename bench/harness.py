"""What the SIPp benches share: ``clinic-pbx run`` as its own process on bench ports (with its own
embedded Asterisk and a demo CRM), process figures from /proc, and the comparison of the CRM's
call records with Asterisk's own CDR."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from pbx.settings import PROJECT_DIR, Settings, load_settings  # noqa: E402
from tests.integration.helpers import assert_matches_cdr  # noqa: E402

CLINIC_PBX = PROJECT_DIR / ".venv" / "bin" / "clinic-pbx"


def bench_config(state: Path, base: int = 26000, web: int = 28080, one_call_per_phone: bool = False, *,
                 rtp: tuple[int, int] = (33000, 34999), database: str = "", system_name: str = "") -> str:
    """Ports of their own (``base`` + n), so a bench runs beside `make run` and the tests; a
    chain's box: the shared ``database`` URL and the box's ``system_name``."""
    return f"""
state_dir = "{state}"
log_level = "WARNING"
{f'database = "{database}"' if database else ""}
[web]
port = {web}
[asterisk]
system_name = "{system_name}"
sip_port = {base + 60}
ami_port = {base + 38}
http_port = {base + 88}
agi_port = {base + 573}
rtp_start = {rtp[0]}
rtp_end = {rtp[1]}
operator_port = {base + 90}
phone_port_base = {base + 70}
ring_seconds = 10
one_call_per_phone = {str(one_call_per_phone).lower()}
"""


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a process."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    rss = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 503 still carries the figures
        try:
            return json.loads(exc.read())
        except ValueError:
            return {}
    except Exception:
        return {}


class BenchServer:
    """`clinic-pbx run` for a bench: init the demo CRM once, start, kill -9, start again."""

    def __init__(self, folder: Path, config: str, *, fresh: bool = True) -> None:
        if fresh:
            self.wipe(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = folder / "bench.toml"
        self.config.write_text(config)
        self.settings: Settings = load_settings(self.config)
        self.env = dict(os.environ, CLINIC_PBX_CONFIG=str(self.config),
                        CLINIC_PBX_ROBOT_DIAL="Local/{number}@patient-sim")
        self.proc: asyncio.subprocess.Process | None = None
        self.log = folder / "server.log"
        self.admin_password = ""

    @staticmethod
    def wipe(folder: Path) -> None:
        """Remove an earlier run's folder, stopping its Asterisk first: it runs in a chroot with
        the state folder bind-mounted, so deleting the files under it would orphan it."""
        old = folder / "bench.toml"
        if old.exists():
            subprocess.run([str(CLINIC_PBX), "--config", str(old), "asterisk", "stop"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)

    async def init(self) -> None:
        init = await asyncio.create_subprocess_exec(str(CLINIC_PBX), "init", "--demo", env=self.env,
                                                    stdout=asyncio.subprocess.DEVNULL)
        await init.wait()
        # the file is deleted at the first login: keep the password for the bench's later logins
        self.admin_password = self.settings.initial_password_file.read_text().strip()

    async def start(self, timeout: float = 60.0) -> None:
        if health(self.settings.web.port):
            raise SystemExit(f"a clinic-pbx from an earlier run still answers on port {self.settings.web.port}")
        with open(self.log, "ab") as out:  # noqa: ASYNC230 - a local log file, opened once
            self.proc = await asyncio.create_subprocess_exec(
                str(CLINIC_PBX), "run", env=self.env, stdout=out, stderr=asyncio.subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise SystemExit(f"clinic-pbx exited: {self.log.read_text()[-2000:]}")
            if health(self.settings.web.port).get("ok"):
                return
            await asyncio.sleep(0.2)
        raise SystemExit(f"clinic-pbx did not come up: {self.log.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def asterisk_pid(self) -> int:
        return int((self.settings.asterisk_var / "run" / "clinic-pbx-asterisk.pid").read_text())

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()

    async def stop_asterisk(self) -> None:
        stop = await asyncio.create_subprocess_exec(str(CLINIC_PBX), "asterisk", "stop", env=self.env,
                                                    stdout=asyncio.subprocess.DEVNULL)
        await stop.wait()

    async def panel(self) -> Panel:
        panel = Panel(f"http://127.0.0.1:{self.settings.web.port}")
        await panel.log_in("admin", self.admin_password)
        return panel


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Panel:
    """The panel as a browser uses it: the login form, the shift question, then CSRF forms."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies of 127.0.0.1
        self.csrf = ""

    async def _csrf(self, path: str) -> str:
        async with self.http.get(self.base + path) as resp:
            match = CSRF.search(await resp.text())
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    async def log_in(self, login: str, password: str) -> None:
        token = await self._csrf("/login")
        async with self.http.post(self.base + "/login", data={"login": login, "password": password,
                                                              "csrf_token": token}) as resp:
            assert resp.status < 400, await resp.text()
        self.csrf = await self._csrf("/shift")
        async with self.http.post(self.base + "/shift", data={"extension": "none", "csrf_token": self.csrf}):
            pass

    async def post(self, path: str, **form: str) -> int:
        async with self.http.post(self.base + path, data={**form, "csrf_token": self.csrf},
                                  allow_redirects=False) as resp:
            return resp.status

    async def close(self) -> None:
        await self.http.close()


def _rows(settings: Settings, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Rows of the CRM's database as dicts: the SQLite file, or a chain's PostgreSQL."""
    if settings.on_postgresql:
        import psycopg
        from psycopg.rows import dict_row

        from crm import dialect

        with psycopg.connect(str(settings.database), row_factory=dict_row) as pg:
            return pg.execute(dialect.statement(sql), params).fetchall()
    con = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params)]
    finally:
        con.close()


def records(settings: Settings, since: str) -> dict[str, dict[str, Any]]:
    out = {row["linkedid"]: row for row in _rows(settings, "SELECT * FROM calls WHERE started_at >= ?", (since,))}
    legs: dict[int, list[dict[str, Any]]] = {}
    for leg in _rows(settings, "SELECT l.call_id, l.extension, l.outcome FROM call_legs l JOIN calls c"
                     " ON c.id = l.call_id WHERE c.started_at >= ? ORDER BY l.id", (since,)):
        legs.setdefault(leg["call_id"], []).append({"extension": leg["extension"], "outcome": leg["outcome"]})
    for call in out.values():
        call["legs"] = legs.get(call["id"], [])
    return out


def cdr_by_linkedid(cdr: Path, since: float) -> dict[str, list[dict[str, Any]]]:
    con = sqlite3.connect(f"file:{cdr}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    out: dict[str, list[dict[str, Any]]] = {}
    for row in con.execute("SELECT * FROM cdr WHERE CAST(start_u AS REAL) >= ?", (since,)):
        out.setdefault(row["linkedid"], []).append(dict(row))
    con.close()
    return out


def compare_with_cdr(settings: Settings, since_wall: float, *, only_operator: bool = True) -> tuple[int, list[str]]:
    """(calls in the CDR since ``since_wall``, linkedids whose record is missing, doubled or
    disagrees). Robot calls (Local channels) are the escort's, not call records."""
    since_iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since_wall - 1))
    ours = records(settings, since_iso)
    theirs = cdr_by_linkedid(settings.cdr_db_path, since_wall - 1)
    if only_operator:
        theirs = {lid: rows for lid, rows in theirs.items()
                  if not any(str(r.get("channel", "")).startswith("Local/") for r in rows)}
    doubled = {r["linkedid"] for r in _rows(
        settings, "SELECT linkedid FROM calls WHERE started_at >= ? GROUP BY linkedid HAVING count(*) > 1",
        (since_iso,))}
    bad = []
    for lid, rows in theirs.items():
        call = ours.get(lid)
        try:
            assert call is not None, "no record"
            assert lid not in doubled, "recorded twice"
            call["legs"] = [{"extension": leg["extension"]} for leg in call["legs"]]
            assert_matches_cdr(call, rows)
        except AssertionError as exc:
            bad.append(f"{lid}: {str(exc).splitlines()[0] if str(exc) else 'disagrees'}")
    return len(theirs), bad

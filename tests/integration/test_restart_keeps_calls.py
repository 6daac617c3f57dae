"""A restart of clinic-pbx never drops a patient's call: the server adopts the running Asterisk
(reloading only a changed configuration) instead of booting a fresh one. Killed with
``kill -9`` while a caller talks and another waits in the queue, started again, the server finds
both calls going on, the waiting one is answered, and each is recorded once, as in the CDR."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from crm.call_listing import CallFilter, list_calls
from crm.db import Database
from pbx.asterisk.embedded import EmbeddedAsterisk
from pbx.outbound.sipp import NEVER, free_udp_ports, start_desk_phone, start_operator_call
from pbx.settings import PROJECT_DIR, Settings
from tests.integration.helpers import assert_matches_cdr, cdr_rows, stop_all

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]


def write_config(settings: Settings, path: Path, web_port: int) -> Path:
    a = settings.asterisk
    fields = {f.name: getattr(a, f.name) for f in dataclasses.fields(a)
              if isinstance(getattr(a, f.name), (int, str, bool)) and not isinstance(getattr(a, f.name), Path)}
    lines = [f'state_dir = "{settings.state_dir}"', f'database = "{settings.db_path}"',
             "[web]", 'host = "127.0.0.1"', f"port = {web_port}", "[asterisk]"]
    for name, value in fields.items():
        lines.append(f"{name} = {str(value).lower() if isinstance(value, bool) else repr(value)}"
                     if not isinstance(value, str) else f'{name} = "{value}"')
    lines.append(f'root = "{a.root}"')
    path.write_text("\n".join(lines) + "\n")
    return path


class ServerProcess:
    """`clinic-pbx run` as a real process, as an operator runs it."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self._spawn()
        await self.wait_healthy()

    def _spawn(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "clinic-pbx"), "--config", str(self.config), "run"],
                cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if not k.startswith("CLINIC_PBX_")},
            )
        finally:
            out.close()

    async def health(self) -> dict | None:
        try:
            async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{self.port}/api/v1/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def wait_healthy(self, timeout: float = 40.0) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            status = await self.health()
            if status and status.get("ok"):
                return status
            await asyncio.sleep(0.2)
        raise AssertionError(f"server not healthy: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def channels(ast: EmbeddedAsterisk) -> list[list[str]]:
    return [line.split("!") for line in ast.rx("core show channels concise").splitlines() if "!" in line]


async def wait_until(pred, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.1)


async def test_kill_9_of_the_server_drops_no_call(asterisk: EmbeddedAsterisk, test_settings: Settings,
                                                  tmp_path: Path) -> None:
    settings = dataclasses.replace(test_settings, database=tmp_path / "crm.sqlite")
    port = free_udp_ports(1, step=1)  # a TCP port from the same private range
    server = ServerProcess(write_config(settings, tmp_path / "clinic-pbx.toml", port), port,
                           tmp_path / "server.log")
    pid0 = asterisk.pid()
    # numbers of this run only: the CDR backfill brings the calls of earlier runs in too
    first, second = (f"+7999{random.randrange(10**7):07d}" for _ in range(2))
    await server.start()
    # 101 answers the first call; 102 and 103 ring and never answer, so the second caller waits
    # the queue rings 102 and 103 again and again (retry): they stay up for every INVITE, as an
    # INVITE to a phone that is gone is retransmitted for 32 s, into the next test
    p101 = await start_desk_phone(settings, "101", tmp_path, ring_ms=300, calls=2)
    others = [await start_desk_phone(settings, ext, tmp_path, ring_ms=NEVER, calls=100) for ext in ("102", "103")]
    talking = await start_operator_call(settings, first, "74951110001", tmp_path,
                                        talk_ms=7000, name="op1")
    await wait_until(lambda: any(c[0].startswith("PJSIP/101") and c[4] == "Up" for c in channels(asterisk)),
                     15, "101 never answered")
    waiting = await start_operator_call(settings, second, "74951110001", tmp_path,
                                        talk_ms=2000, name="op2")
    await wait_until(lambda: sum(c[0].startswith("PJSIP/operator") for c in channels(asterisk)) == 2,
                     15, "the second caller never reached the queue")
    server.kill9()
    assert asterisk.pid() == pid0
    await server.start()  # adopts; does not hang anybody up
    assert asterisk.pid() == pid0
    assert sum(c[0].startswith("PJSIP/operator") for c in channels(asterisk)) == 2
    # the first caller finishes talking; 101 is free again and takes the waiting caller
    assert await talking.wait(40) == 0, talking.errors
    assert await waiting.wait(60) == 0, waiting.errors
    await stop_all(p101)
    for phone in others:  # no call rings them any more
        phone.kill()
    await stop_all(*others)
    db = Database(settings.db_path)
    await db.open()
    try:
        ours = (first, second)
        for _ in range(100):
            rows = [r for r in await list_calls(db, CallFilter(limit=1000)) if r["phone_e164"] in ours]
            if len(rows) >= 2:
                break
            await asyncio.sleep(0.2)
        by_caller = {r["phone_e164"]: r for r in rows}
        assert sorted(by_caller) == sorted(ours), rows
        assert len(rows) == 2, rows  # each exactly once
        for record in rows:
            assert record["answered_by_ext"] == "101", record
            from crm.call_listing import get_call
            full = await get_call(db, record["id"])
            assert full is not None
            assert_matches_cdr(full, cdr_rows(settings.cdr_db_path, record["linkedid"]))
    finally:
        await db.close()
        server.terminate()
    assert asterisk.pid() == pid0  # stopping the server leaves Asterisk and its calls alone


async def test_start_reloads_a_changed_config_without_a_restart(asterisk: EmbeddedAsterisk,
                                                                test_settings: Settings) -> None:
    pid0 = asterisk.pid()
    wait = test_settings.asterisk.queue_max_wait
    changed = dataclasses.replace(test_settings,
                                  asterisk=dataclasses.replace(test_settings.asterisk, queue_max_wait=wait + 1))
    try:
        other = EmbeddedAsterisk(changed)
        assert other.start() == pid0 and other.adopted
        assert f"QUEUE_MAX_WAIT={wait + 1}" in asterisk.rx("dialplan show globals")
    finally:
        again = EmbeddedAsterisk(test_settings)
        assert again.start() == pid0 and again.adopted
    assert f"QUEUE_MAX_WAIT={wait}" in asterisk.rx("dialplan show globals")


async def test_asterisk_restarted_under_the_server(asterisk: EmbeddedAsterisk, server) -> None:
    """An explicit `clinic-pbx asterisk restart` (or a crash and a new Asterisk): AMI and ARI
    are back within 5 s of Asterisk being up, the robot's Stasis app registered again."""
    services, _ = server
    assert services.ami is not None and services.ari is not None and services.calls is not None
    connects = services.ari.connects
    await asyncio.to_thread(asterisk.restart)
    up = asyncio.get_running_loop().time()
    deadline = up + 5.0
    while asyncio.get_running_loop().time() < deadline:
        if (services.ami.connected and services.ari.connected.is_set() and services.ari.connects > connects
                and services.calls.resynced.is_set()):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"not back within 5 s: ami={services.ami.connected} ari={services.ari.connected.is_set()}")
    assert await services.ari.app_registered()
    assert "clinic-pbx" in asterisk.rx("ari show apps").split()

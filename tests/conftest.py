"""Shared fixtures. Integration tests run against one real Asterisk started for the session on
its own loopback ports and runtime folder, so ``make test`` works beside a ``make run``.

With ``CI`` set, a missing Asterisk, SIPp, Chromium or PostgreSQL fails the test instead of
skipping it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from crm.db import Database
from crm.storage import AnyDatabase, database
from pbx.ami.client import AmiEvent, AmiLink
from pbx.ami.recording import RawRecorder
from pbx.app import SERVICES, Services, build_app
from pbx.asterisk.embedded import EmbeddedAsterisk
from pbx.settings import PROJECT_DIR, AsteriskSettings, Settings, with_generated_secrets
from tests.gateway_fake import FakeGateway
from tests.pg_cluster import PgCluster, pg_bin, running_cluster
from tests.tls_provider import make_test_ca

IN_CI = bool(os.environ.get("CI"))
TEST_STATE = Path(os.environ.get("CLINIC_PBX_TEST_STATE", PROJECT_DIR / ".local" / "test-state"))


def require(what: str, present: bool, hint: str) -> None:
    if present:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing and CI is set: {hint}")
    pytest.skip(f"{what} is missing: {hint}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster for the run (a fresh database per test)."""
    require("PostgreSQL", pg_bin() is not None, "make installs Debian's postgresql")
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's CRM lives, on each storage: a SQLite file, or a fresh database of the
    run's PostgreSQL cluster (a clinic chain's)."""
    if request.param == "sqlite":
        return tmp_path / "crm.sqlite"
    return str(request.getfixturevalue("pg_cluster").new_database())


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """An empty, migrated CRM in a SQLite file of the test's own (a test that is SQLite's only)."""
    opened = Database(tmp_path / "crm.sqlite")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def crm_db(db_location: Path | str) -> AsyncIterator[AnyDatabase]:
    """An empty, migrated CRM on each storage."""
    db = database(db_location)
    await db.open()
    yield db
    await db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_setting(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings' overrides for a panel on each storage: none (the embedded SQLite in the state
    folder) or a fresh database of the run's PostgreSQL cluster."""
    if request.param == "sqlite":
        return {}
    return {"database": request.getfixturevalue("pg_cluster").new_database()}


def make_test_settings() -> Settings:
    asterisk = AsteriskSettings(
        embedded=True,
        sip_port=15060,
        ami_port=15038,
        http_port=18088,
        agi_port=14573,
        rtp_start=31000,
        rtp_end=31999,
        operator_port=15090,
        phone_port_base=15070,
        ring_seconds=4,
        queue_max_wait=12,
        transfer_ring_seconds=8,
        ami_ping_seconds=5,
    )
    # a provider over TLS (tests/tls_provider.py) shows a certificate of this test CA
    ca, _, _ = make_test_ca(TEST_STATE.parent / "test-tls")
    asterisk = dataclasses.replace(asterisk, tls_extra_ca=str(ca))
    root = os.environ.get("CLINIC_PBX_ASTERISK_ROOT")
    if root:
        asterisk = dataclasses.replace(asterisk, root=Path(root))
    return with_generated_secrets(Settings(state_dir=TEST_STATE, asterisk=asterisk))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    return make_test_settings()


@pytest.fixture(scope="session")
def asterisk(test_settings: Settings) -> Iterator[EmbeddedAsterisk]:
    ast = EmbeddedAsterisk(test_settings)
    require("Asterisk", ast.installed, "run `make test` (it runs scripts/install-asterisk.sh)")
    require("SIPp", shutil.which("sipp") is not None, "apt-get install sip-tester")
    # Registered contacts live in astdb across restarts; a test instance starts from none.
    ast.stop()  # a test session starts from a fresh Asterisk, never one left by a killed run
    (test_settings.asterisk_var / "lib" / "astdb.sqlite3").unlink(missing_ok=True)
    ast.start()
    yield ast
    ast.stop()


def active_channels(ast: EmbeddedAsterisk) -> int:
    out = ast.rx("core show channels count")
    for line in out.splitlines():
        if "active channel" in line:
            return int(line.split()[0])
    return 0


def kill_child_sipps() -> None:
    """A failed test may leave its SIPp phones running on the phones' fixed ports."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if name == "sipp" and int(fields[1]) == me:
            try:
                os.kill(int(stat.parent.name), 9)
            except OSError:
                pass


@pytest.fixture(scope="session")
def caller_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of Russian speech as a mu-law WAV for SIPp to stream as the caller."""
    require("espeak-ng and sox", bool(shutil.which("espeak-ng") and shutil.which("sox")),
            "apt-get install espeak-ng sox")
    out = tmp_path_factory.mktemp("voice")
    raw = out / "voice.wav"
    subprocess.run(
        ["espeak-ng", "-v", "ru", "-w", str(raw),
         "Здравствуйте, я хочу записаться на приём к стоматологу на следующей неделе."],
        check=True,
    )
    ulaw = out / "voice_ulaw.wav"
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "u-law", str(ulaw)], check=True)
    return ulaw


@pytest.fixture
def sip_guard(request: pytest.FixtureRequest, asterisk: EmbeddedAsterisk) -> Iterator[None]:
    """Pitfall 8: PJSIP retransmits an unanswered INVITE for 32 s, into the next test's phones.
    After each SIP test, wait for Asterisk to have no channels; if some remain or the test
    failed, restart Asterisk so nothing leaks into the next test."""
    yield
    kill_child_sipps()
    deadline = time.monotonic() + 10
    while active_channels(asterisk) and time.monotonic() < deadline:
        time.sleep(0.2)
    failed = getattr(request.node, "rep_call", None)
    if active_channels(asterisk) or (failed is not None and failed.failed):
        asterisk.rx("channel request hangup all")
        asterisk.restart()


class EventLog:
    """Every AMI item the server's pump saw, with waiting helpers for tests."""

    def __init__(self) -> None:
        self.items: list[AmiEvent | AmiLink] = []
        self._changed = asyncio.Event()

    def __call__(self, item: AmiEvent | AmiLink) -> None:
        self.items.append(item)
        self._changed.set()

    @property
    def events(self) -> list[AmiEvent]:
        return [i for i in self.items if isinstance(i, AmiEvent)]

    async def wait_for(
        self, pred: Callable[[AmiEvent], bool], timeout: float = 20.0
    ) -> AmiEvent:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            events = self.events
            for ev in events[seen:]:
                if pred(ev):
                    return ev
            seen = len(events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("AMI event not seen")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass


@pytest.fixture
async def server(
    asterisk: EmbeddedAsterisk, test_settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Services, EventLog]]:
    """The whole clinic-pbx app (web, AMI, ARI, FastAGI, fresh CRM) against the real Asterisk."""
    settings = dataclasses.replace(test_settings, database=tmp_path / "crm.sqlite")
    recorder = RawRecorder(tmp_path / "ami.amiraw")
    app = build_app(settings, manage_asterisk=False, ami_raw_sink=recorder)
    log = EventLog()
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    services = app[SERVICES]
    services.web_port = srv.port  # type: ignore[attr-defined]
    services.web_app = app  # type: ignore[attr-defined]
    assert services.pump is not None and services.ami is not None and services.ari is not None
    services.pump.add_sink(log)
    assert await services.ami.wait_connected(10), "AMI did not connect"
    assert await services.ari.wait_connected(10), "ARI did not connect"
    await telephony_applied(services)
    yield services, log
    await srv.close()
    recorder.close()


async def telephony_applied(services: Services, timeout: float = 15.0) -> None:
    """Asterisk has this CRM's telephony (a fresh CRM each test; the previous test's providers,
    phones and bans must not answer this test's calls)."""
    from crm import telephony

    if services.telephony is None:
        return
    services.telephony.wake()
    deadline = asyncio.get_running_loop().time() + timeout
    while services.telephony.applier.state.revision != await telephony.revision(services.db):
        assert asyncio.get_running_loop().time() < deadline, services.telephony.applier.state
        await asyncio.sleep(0.05)


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    """A local HTTP message gateway (push, WhatsApp, SMS) that keeps what it is sent."""
    g = FakeGateway()
    await g.start()
    yield g
    await g.stop()

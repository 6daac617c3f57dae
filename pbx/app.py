"""The composition root: one function builds the whole server from a frozen Settings.

Each long-lived adapter is a ``cleanup_ctx`` generator, so start-up runs top to bottom and
shutdown runs bottom to top: the database opens first and closes last; the embedded Asterisk
starts before the adapters that talk to it and stops after them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from agi.routes import incoming_route
from agi.server import AgiRequest, FastAgiServer
from crm.clock import Clock, SystemClock
from crm.db import Database
from pbx.ami.client import AmiClient, RawSink
from pbx.ari.client import AriClient
from pbx.call_service import CallService
from pbx.cdr_backfill import CdrReader
from pbx.embedded import EmbeddedAsterisk
from pbx.escort_service import EscortService
from pbx.event_pump import EventPump
from pbx.gateways import make_gateway
from pbx.robot_caller import RobotCaller
from pbx.settings import Settings
from pbx.storage_health import disk_space
from pbx.tts import PromptCache, TtsError, load_phrases

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the request handlers may reach, built once per application."""

    settings: Settings
    db: Database
    asterisk: EmbeddedAsterisk | None = None
    ami: AmiClient | None = None
    pump: EventPump | None = None
    ari: AriClient | None = None
    agi: FastAgiServer | None = None
    calls: CallService | None = None
    robot: RobotCaller | None = None
    escort: EscortService | None = None
    clock: Clock = field(default_factory=SystemClock)
    started_at: float = field(default_factory=time.time)  # the counters in health count from here


SERVICES = web.AppKey("services", Services)


def build_app(
    settings: Settings,
    *,
    manage_asterisk: bool | None = None,
    ami_raw_sink: RawSink | None = None,
    clock: Clock | None = None,
    run_escort: bool = True,
) -> web.Application:
    """Build the aiohttp application. ``manage_asterisk`` defaults to settings.asterisk.embedded;
    ``ami_raw_sink`` receives every raw AMI read (the recorder); ``run_escort=False`` leaves
    the escort's background loop off (tests drive ``services.escort.tick()`` themselves)."""
    from web.app import setup_web  # web depends on pbx, not the other way round

    app = web.Application()
    services = Services(settings=settings, db=Database(settings.db_path), clock=clock or SystemClock())
    app[SERVICES] = services
    manage = settings.asterisk.embedded if manage_asterisk is None else manage_asterisk

    async def database(_: web.Application) -> AsyncIterator[None]:
        await services.db.open()
        yield
        await services.db.close()

    async def call_tracking(_: web.Application) -> AsyncIterator[None]:
        services.calls = CallService(services.db, CdrReader(settings.cdr_db_path))
        services.calls.start()
        yield
        await services.calls.stop()

    async def embedded_asterisk(_: web.Application) -> AsyncIterator[None]:
        services.asterisk = EmbeddedAsterisk(settings)
        if manage:  # adopts a running Asterisk: a restart of clinic-pbx drops no call
            pid = await asyncio.to_thread(services.asterisk.start)
        yield
        if manage:  # patients' calls outlive the CRM; `clinic-pbx asterisk stop` ends them
            log.info("Asterisk pid %s keeps running; `clinic-pbx asterisk stop` stops it", pid)

    async def fastagi(_: web.Application) -> AsyncIterator[None]:
        a = settings.asterisk
        agi = FastAgiServer(a.agi_host, a.agi_port)
        agi.add_route("incoming", incoming_route(services.db))
        agi.add_route("ping", agi_ping)
        await agi.start()
        services.agi = agi
        yield
        await agi.stop()

    async def ami(_: web.Application) -> AsyncIterator[None]:
        a = settings.asterisk
        client = AmiClient(
            a.host, a.ami_port, a.ami_user, a.ami_secret,
            ping_interval=a.ami_ping_seconds, ping_timeout=a.ami_ping_timeout,
            raw_sink=ami_raw_sink,
        )
        pump = EventPump(client)
        assert services.calls is not None
        pump.add_sink(services.calls.on_ami)
        pump.add_resync(services.calls.resync)
        pump.start()
        await client.start(wait=5.0 if manage else None)
        services.ami, services.pump = client, pump
        yield
        await client.stop()
        await pump.stop()

    async def ari(_: web.Application) -> AsyncIterator[None]:
        a = settings.asterisk
        client = AriClient(f"http://{a.host}:{a.http_port}", a.ari_user, a.ari_password, a.ari_app)
        await client.start()
        if manage:
            await client.wait_connected(5.0)
        services.ari = client
        yield
        await client.stop()

    async def robots(_: web.Application) -> AsyncIterator[None]:
        prompts = PromptCache(settings.sounds_dir / "tts", settings.robot.tts_rate)
        robot = None
        if services.ari is not None:
            try:
                phrases = load_phrases()
            except (TtsError, OSError) as exc:
                log.error("robot phrases missing (%s): the robot will not call", exc)
            else:  # rendered on the first call (or ahead of time by `clinic-pbx sounds`)
                robot = RobotCaller(services.ari, settings, prompts, phrases)
                await robot.start()
        gateway = make_gateway(settings.gateway)
        if settings.gateway.demo:
            log.warning("gateway.demo is on: messages are logged here and sent nowhere")
        await gateway.start()
        escort = EscortService(services.db, settings, services.clock, gateway, robot, prompts)
        await escort.start(loop=run_escort)
        services.robot, services.escort = robot, escort
        yield
        await escort.stop()
        if robot is not None:
            await robot.stop()
        await gateway.stop()

    app.cleanup_ctx.extend([database, call_tracking, embedded_asterisk, fastagi, ami, ari, robots])
    setup_web(app, settings)
    return app


async def agi_ping(request: AgiRequest) -> None:
    """``agi://.../ping``: answers ``clinic-pbx check`` and monitoring with one SET VARIABLE."""
    await request.set_variable("CLINIC_AGI_STATUS", "OK")


HEALTH_PARTS = ("db", "db_writes", "disk", "ami", "ari", "agi")  # all true: the server is healthy


async def health(services: Services) -> dict[str, object]:
    """Component status for /api/v1/health and the home page. ``ari`` is true only while our
    Stasis app is registered (the client verifies it), not merely while a socket is open."""
    ari_ok = services.ari is not None and services.ari.connected.is_set()
    calls = services.calls
    failing = calls.write_failing_since if calls is not None else None
    disk = disk_space(services.settings.state_dir, services.settings.disk_alarm_mb)
    return {
        "db": await services.db.ping(),
        # finished calls are being committed (false while the database is locked or the disk
        # full: the records wait in memory and are retried, nothing is dropped)
        "db_writes": failing is None,
        "db_error": calls.last_write_error if calls is not None and failing is not None else "",
        "db_failing_since": datetime.fromtimestamp(failing, UTC).isoformat(timespec="seconds") if failing else None,
        "calls_pending": calls.pending_writes if calls is not None else 0,
        "disk": disk.ok,
        "disk_free_mb": disk.free_mb,
        "ami": services.ami is not None and services.ami.connected,
        "ari": ari_ok,
        "agi": services.agi is not None and services.agi.server is not None,
        "live_calls": len({lid for cards in calls.live.values() for lid in cards}) if calls is not None else 0,
        "tasks": len(asyncio.all_tasks()),  # flat over a day: no task leak (the soak bench reads it)
        "ami_events": services.pump.stats.events if services.pump is not None else 0,
        # FastAgiServer is a dict (panoramisk's Application): empty, so falsy: compare with None
        "agi_requests": services.agi.stats["requests"] if services.agi is not None else 0,
        # the counters are this process's: after a restart they start again from 0
        "counted_since": datetime.fromtimestamp(services.started_at, UTC).isoformat(timespec="seconds"),
    }

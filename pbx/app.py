"""The composition root: one function builds the whole server from a frozen Settings.

Each long-lived adapter is a ``cleanup_ctx`` generator, so start-up runs top to bottom and
shutdown runs bottom to top: the database opens first and closes last; the embedded Asterisk
starts before the adapters that talk to it and stops after them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from agi.routes import after_hours_route, incoming_route, outgoing_check_route
from agi.server import AgiRequest, FastAgiServer
from crm import storage, toll
from crm.clock import Clock, SystemClock
from crm.local_outbox import LocalOutbox
from crm.pg import PgDatabase
from crm.rules.sip_guard import GuardPolicy
from pbx.ami.client import AmiClient, RawSink
from pbx.ami.pump import EventPump
from pbx.ari.client import AriClient
from pbx.ari.flow_runner import FlowRunner
from pbx.asterisk.apply import TelephonyApplier
from pbx.asterisk.cdr_db import CdrReader
from pbx.asterisk.embedded import EmbeddedAsterisk
from pbx.jobs.callback import CallbackService
from pbx.jobs.confirmation_call import RobotCaller
from pbx.jobs.escort import EscortService
from pbx.jobs.mis_import import ImportService
from pbx.jobs.webhooks import WebhookService
from pbx.outbound.gateways import Gateway, make_gateway
from pbx.outbound.mailer import SmtpMailer
from pbx.outbound.tts import PromptCache, TtsError, load_phrases
from pbx.process import settle_heap
from pbx.services import HEALTH_PARTS, SERVICES, Services, health  # noqa: F401 - re-exported
from pbx.settings import GatewaySettings, Settings
from pbx.workers.asterisk_supervisor import AsteriskSupervisor
from pbx.workers.calls import CallService
from pbx.workers.centre_start import open_when_centre_answers
from pbx.workers.recordings import RecordingKeeper
from pbx.workers.report_refresher import ReportRefresher
from pbx.workers.telephony import TelephonyWorker
from web.app import setup_web

log = logging.getLogger(__name__)


def real_ami(settings: Settings, raw_sink: RawSink | None) -> AmiClient | None:
    a = settings.asterisk
    return AmiClient(a.host, a.ami_port, a.ami_user, a.ami_secret, ping_interval=a.ami_ping_seconds,
                     ping_timeout=a.ami_ping_timeout, raw_sink=raw_sink)


def real_ari(settings: Settings) -> AriClient | None:
    a = settings.asterisk
    return AriClient(f"http://{a.host}:{a.http_port}", a.ari_user, a.ari_password, a.ari_app)


@dataclass(frozen=True)
class Adapters:
    """How the root makes each outside-facing adapter; tests swap them (a factory that returns
    None leaves that adapter off: the panel without any Asterisk)."""

    ami: Callable[[Settings, RawSink | None], AmiClient | None] = real_ami
    ari: Callable[[Settings], AriClient | None] = real_ari
    gateway: Callable[[GatewaySettings], Gateway] = make_gateway
    agi: bool = True  # serve FastAGI

    @classmethod
    def offline(cls) -> Adapters:
        """No Asterisk at all: the panel and the CRM alone."""
        return cls(ami=lambda _s, _r: None, ari=lambda _s: None, agi=False)


def build_app(
    settings: Settings,
    *,
    manage_asterisk: bool | None = None,
    ami_raw_sink: RawSink | None = None,
    clock: Clock | None = None,
    run_escort: bool = True,
    adapters: Adapters | None = None,
) -> web.Application:
    """Build the aiohttp application. ``manage_asterisk`` defaults to settings.asterisk.embedded;
    ``ami_raw_sink`` receives every raw AMI read (the recorder); ``run_escort=False`` leaves
    the background loops off: the robots' job loops and the recordings keeper (tests drive
    ``services.escort.tick()`` and the others themselves)."""
    make = adapters or Adapters()
    app = web.Application()
    clock = clock or SystemClock()  # one clock: events' times, jobs' due times and audit stamps
    db = storage.database(settings.db_location, clock, settings.state_dir / "chain-copy.sqlite")
    services = Services(settings=settings, db=db, clock=clock)
    app[SERVICES] = services
    manage = settings.asterisk.embedded if manage_asterisk is None else manage_asterisk

    async def database(_: web.Application) -> AsyncIterator[None]:
        if isinstance(services.db, PgDatabase):  # a branch started during an outage waits for the centre
            await open_when_centre_answers(services.db, standby_agi)
        else:
            await services.db.open()
        yield
        await services.db.close()

    async def call_tracking(_: web.Application) -> AsyncIterator[None]:
        outbox = LocalOutbox(settings.state_dir / "chain-outbox.sqlite") if settings.on_postgresql else None
        services.calls = CallService(services.db, CdrReader(settings.cdr_db_path),
                                     box=settings.asterisk.system_name, outbox=outbox)
        services.calls.start()
        yield
        await services.calls.stop()
        if outbox is not None:
            outbox.close()

    async def embedded_asterisk(_: web.Application) -> AsyncIterator[None]:
        services.asterisk = EmbeddedAsterisk(settings)
        if manage:  # adopts a running Asterisk: a restart of clinic-pbx drops no call
            pid = await asyncio.to_thread(services.asterisk.start)
            # a dead Asterisk is started again (#31): `clinic-pbx run` needs no one to notice
            services.supervisor = AsteriskSupervisor(services.asterisk)
            services.supervisor.start()
        yield
        if services.supervisor is not None:
            await services.supervisor.stop()
        if manage:  # patients' calls outlive the CRM; `clinic-pbx asterisk stop` ends them
            log.info("Asterisk pid %s keeps running; `clinic-pbx asterisk stop` stops it", pid)

    def agi_server() -> FastAgiServer:
        agi = FastAgiServer(settings.asterisk.agi_host, settings.asterisk.agi_port)
        agi.add_route("incoming", incoming_route(services.db))
        agi.add_route("after_hours", after_hours_route(services.db, services.clock))
        agi.add_route("outgoing_check", outgoing_check_route(services.db, services.clock))
        agi.add_route("ping", agi_ping)
        return agi

    async def standby_agi() -> Callable[[], Awaitable[None]] | None:
        """FastAGI before the centre answers: lookups from the local copy (``db.open_copy``)."""
        if not make.agi:
            return None
        agi = agi_server()
        await agi.start()
        return agi.stop

    async def fastagi(_: web.Application) -> AsyncIterator[None]:
        if not make.agi:
            yield
            return
        agi = agi_server()
        await agi.start()
        services.agi = agi
        yield
        await agi.stop()

    async def ami(_: web.Application) -> AsyncIterator[None]:
        client = make.ami(settings, ami_raw_sink)
        if client is None:
            yield
            return
        pump = EventPump(client)
        assert services.calls is not None
        pump.add_sink(services.calls.on_ami)
        pump.add_resync(services.calls.resync)
        # the panel's telephony is applied to the Asterisk we run (an existing one includes
        # the files `clinic-pbx asterisk config --out` renders)
        embedded = settings.asterisk.embedded
        etc = settings.asterisk_etc if embedded else Path(settings.asterisk.include_dir or ".")
        applier = TelephonyApplier(etc, services.db, client, tz=settings.time_zone,
                                   prompts=PromptCache(settings.sounds_dir / "tts", settings.robot.tts_rate),
                                   box_branches=settings.asterisk.branches, own_transports=embedded)
        a = settings.asterisk
        guard = GuardPolicy(threshold=a.ban_failures, window=a.ban_window, ban_seconds=a.ban_minutes * 60)
        own = tuple(n.strip() for n in a.local_networks.split(",") if n.strip()) + (a.operator_ip,)
        telephony = TelephonyWorker(applier, services.db, client, log_path=settings.asterisk_var / "log" / "messages.log"
                                    if embedded else None, guard=guard, own_networks=own,
                                    ) if embedded or a.include_dir else None
        if telephony is not None:
            pump.add_sink(telephony.on_ami)
        pump.start()
        await client.start(wait=5.0 if manage else None)
        services.ami, services.pump, services.telephony = client, pump, telephony
        if telephony is not None:
            telephony.start()
        yield
        if telephony is not None:
            await telephony.stop()
        await client.stop()
        await pump.stop()

    async def ari(_: web.Application) -> AsyncIterator[None]:
        client = make.ari(settings)
        if client is None:
            yield
            return
        await client.start()
        if manage:
            await client.wait_connected(5.0)
        services.ari = client
        yield
        await client.stop()

    async def robots(_: web.Application) -> AsyncIterator[None]:
        prompts = PromptCache(settings.sounds_dir / "tts", settings.robot.tts_rate)
        robot, runner = None, None
        if services.ari is not None:
            runner = FlowRunner(services.ari, settings.asterisk.ari_app)  # both robots' calls
            await runner.start()
            try:
                phrases = load_phrases()
            except (TtsError, OSError) as exc:
                log.error("robot phrases missing (%s): the robot will not call", exc)
            else:  # rendered on the first call (or ahead of time by `clinic-pbx sounds`)
                telephony = services.telephony
                robot = RobotCaller(services.ari, settings, prompts, phrases, runner=runner,
                                    route=telephony.outgoing_route if telephony is not None
                                    else lambda number: ("operator", number),
                                    refuse=lambda number: toll.check(services.db, number, "", services.clock.now()))
        gateway = make.gateway(settings.gateway)
        if settings.gateway.demo:
            log.warning("gateway.demo is on: messages are logged here and sent nowhere")
        await gateway.start()
        escort = EscortService(services.db, settings, services.clock, gateway, robot, prompts)
        calls = services.calls
        assert calls is not None
        callback = CallbackService(
            services.db, settings, services.clock, runner, prompts, SmtpMailer(settings.mail),
            busy_phones=lambda: {ext for ext, cards in calls.live.items() if cards},
            queue_phones=lambda q: set(calls.members.get(q, set())),
            other_robot=escort.line_demand, send_messages=escort.send_messages)
        escort.shared_lines = lambda: callback.active
        await escort.start(loop=run_escort)
        await callback.start(loop=run_escort)
        services.robot, services.escort, services.callbacks = robot, escort, callback
        yield
        await callback.stop()
        await escort.stop()
        if runner is not None:
            await runner.stop()
        await gateway.stop()

    async def recordings(_: web.Application) -> AsyncIterator[None]:
        keeper = RecordingKeeper(services.db, settings)
        if run_escort:  # the background loops (tests drive them by hand)
            keeper.start()
        yield
        await keeper.stop()

    async def report_days(_: web.Application) -> AsyncIterator[None]:
        refresher = ReportRefresher(services.db, ZoneInfo(settings.time_zone))
        if run_escort:
            refresher.start()
        yield
        await refresher.stop()

    async def imports(_: web.Application) -> AsyncIterator[None]:
        tz = ZoneInfo(settings.time_zone)
        services.imports = ImportService(services.db, settings.time_zone,
                                         lambda: datetime.fromtimestamp(services.clock.now(), tz).date(),
                                         settings.state_dir / "imports")
        if run_escort:  # an import a stop cut short goes on (tests drive them by hand)
            services.imports.resume_interrupted()
        yield
        await services.imports.stop()

    async def outgoing_webhooks(_: web.Application) -> AsyncIterator[None]:
        services.webhooks = WebhookService(services.db, services.clock)
        await services.webhooks.start(loop=run_escort)  # tests drive the passes by hand
        yield
        await services.webhooks.stop()

    # Asterisk first: a chain's branch whose centre is down at start still takes calls while
    # ``database`` waits for the centre (and its FastAGI names the callers meanwhile)
    app.cleanup_ctx.extend([embedded_asterisk, database, call_tracking, fastagi, ami, ari, robots, recordings,
                            report_days, imports, outgoing_webhooks])
    setup_web(app, settings)
    if run_escort:  # the server itself, started (after every cleanup_ctx above): its heap settled
        app.on_startup.append(settled_heap)
    return app


async def settled_heap(_: web.Application) -> None:
    log.info("startup's heap settled: %d objects out of the collector's full passes", settle_heap())


async def agi_ping(request: AgiRequest) -> None:
    """``agi://.../ping``: answers ``clinic-pbx check`` and monitoring with one SET VARIABLE."""
    await request.set_variable("CLINIC_AGI_STATUS", "OK")

"""What the request handlers may reach, in one typed holder under one ``AppKey``, and the health
the panel and ``/api/v1/health`` show. ``web/`` imports this small module, never the
composition root (``pbx.app``), so the root imports ``web`` without a cycle.

The adapters are filled in by the root's ``cleanup_ctx`` as each starts (aiohttp freezes the
application's mapping before start-up, so they cannot be keys of their own set later); a field
is ``None`` while its adapter is off or not started.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from agi.server import FastAgiServer
from crm.clock import Clock, SystemClock
from crm.storage import AnyDatabase
from pbx.ami.client import AmiClient
from pbx.ami.pump import EventPump
from pbx.ari.client import AriClient
from pbx.asterisk.embedded import EmbeddedAsterisk
from pbx.jobs.callback import CallbackService
from pbx.jobs.confirmation_call import RobotCaller
from pbx.jobs.escort import EscortService
from pbx.jobs.mis_import import ImportService
from pbx.jobs.webhooks import WebhookService
from pbx.settings import Settings
from pbx.version import VERSION
from pbx.workers.asterisk_supervisor import AsteriskSupervisor
from pbx.workers.calls import CallService
from pbx.workers.storage_health import disk_space
from pbx.workers.telephony import TelephonyWorker


@dataclass
class Services:
    """Everything the request handlers may reach, built once per application."""

    settings: Settings
    db: AnyDatabase
    asterisk: EmbeddedAsterisk | None = None
    supervisor: AsteriskSupervisor | None = None  # the embedded Asterisk started again when it dies
    ami: AmiClient | None = None
    pump: EventPump | None = None
    ari: AriClient | None = None
    agi: FastAgiServer | None = None
    calls: CallService | None = None
    robot: RobotCaller | None = None
    escort: EscortService | None = None
    callbacks: CallbackService | None = None
    telephony: TelephonyWorker | None = None
    imports: ImportService | None = None  # the MIS imports (issue #33)
    webhooks: WebhookService | None = None  # outgoing webhooks to the MIS (issue #33)
    clock: Clock = field(default_factory=SystemClock)
    started_at: float = field(default_factory=time.time)  # the counters in health count from here


SERVICES = web.AppKey("services", Services)


HEALTH_PARTS = ("db", "db_writes", "disk", "ami", "ari", "agi")  # all true: the server is healthy


async def health(services: Services) -> dict[str, object]:
    """Component status for /api/v1/health and the home page. ``ari`` is true only while our
    Stasis app is registered (the client verifies it), not merely while a socket is open."""
    ari_ok = services.ari is not None and services.ari.connected.is_set()
    calls = services.calls
    failing = calls.write_failing_since if calls is not None else None
    disk = disk_space(services.settings.state_dir, services.settings.disk_alarm_mb)
    telephony = services.telephony
    trunks = telephony.statuses() if telephony is not None else {}
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
        # the panel's providers as Asterisk last reported them (registered / refused / ...), and
        # whether the last telephony change is what Asterisk runs (None: Asterisk is not ours)
        "providers": [{"id": pid, "name": telephony.applier.names.get(pid, ""), "status": st.code, "text": st.text}
                      for pid, st in trunks.items()] if telephony is not None else [],
        "providers_ok": all(st.code in ("registered", "reachable") for st in trunks.values()),
        "telephony_applied": telephony.applier.state.error == "" if telephony is not None else None,
        # the embedded Asterisk started again by the server (#31): how often, the last time, why
        "asterisk_restarts": services.supervisor.state(time.time()) if services.supervisor is not None else None,
        "live_calls": len({lid for cards in calls.live.values() for lid in cards}) if calls is not None else 0,
        "tasks": len(asyncio.all_tasks()),  # flat over a day: no task leak (the soak bench reads it)
        "ami_events": services.pump.stats.events if services.pump is not None else 0,
        # FastAgiServer is a dict (panoramisk's Application): empty, so falsy: compare with None
        "agi_requests": services.agi.stats["requests"] if services.agi is not None else 0,
        # the counters are this process's: after a restart they start again from 0
        "version": VERSION,
        "counted_since": datetime.fromtimestamp(services.started_at, UTC).isoformat(timespec="seconds"),
    }

"""``clinic-pbx check``: is each of AMI, ARI and FastAGI reachable and answering, can the database
take a write, is there room on the disk, and is the running server saving its calls?"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp

from crm.db import probe_write_lock
from crm.pg_wire import probe_postgresql
from pbx.ami.client import AmiClient
from pbx.ari.client import AriClient, AriError
from pbx.settings import Settings
from pbx.workers.storage_health import disk_space

Result = tuple[bool, str]


async def check_ami(settings: Settings, timeout: float) -> Result:
    a = settings.asterisk
    client = AmiClient(a.host, a.ami_port, a.ami_user, a.ami_secret, backoff_max=1.0)
    try:
        if not await client.start(wait=timeout):
            return False, f"no login at {a.host}:{a.ami_port} within {timeout:.0f} s"
        reply: Any = await client.action({"Action": "CoreSettings"}, timeout=timeout)
        return True, f"{a.host}:{a.ami_port}, Asterisk {reply.get('AsteriskVersion', '?')}"
    finally:
        await client.stop()


def check_app_name(settings: Settings) -> str:
    """The check's own Stasis app: opening the events socket under the server's app name would
    take the server's app over, and Asterisk destroys it when the check leaves."""
    return f"{settings.asterisk.ari_app}-check-{os.getpid()}"


async def check_ari(settings: Settings, timeout: float) -> Result:
    a = settings.asterisk
    client = AriClient(f"http://{a.host}:{a.http_port}", a.ari_user, a.ari_password,
                       check_app_name(settings), request_timeout=timeout)
    await client.start()
    try:
        info = await client.get("asterisk/info")
        ws = await client.wait_connected(timeout)
        version = info.get("system", {}).get("version", "?")
        if not ws:
            return False, f"REST answers (Asterisk {version}) but the events WebSocket does not"
        # is the server's robot app there? (only a running server registers it)
        apps = {app.get("name") for app in await client.get("applications")}
        server = f"app {a.ari_app} registered" if a.ari_app in apps else f"app {a.ari_app} NOT registered"
        return True, f"{a.host}:{a.http_port}, REST + events WebSocket, {server}"
    except AriError as exc:
        return False, str(exc)
    except Exception as exc:  # connection refused, timeout
        return False, f"{a.host}:{a.http_port}: {exc or type(exc).__name__}"
    finally:
        await client.stop()


async def check_agi(settings: Settings, timeout: float) -> Result:
    """Talk FastAGI to our own server like Asterisk would: request ``ping``, answer its command."""
    a = settings.asterisk
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(a.agi_host, a.agi_port), timeout
        )
    except (OSError, TimeoutError) as exc:
        return False, f"{a.agi_host}:{a.agi_port}: {exc or 'timeout'}"
    try:
        writer.write(
            b"agi_network: yes\nagi_network_script: ping\nagi_request: agi://check/ping\n"
            b"agi_channel: check\n\n"
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line.startswith(b"SET VARIABLE CLINIC_AGI_STATUS"):
            return False, f"unexpected reply {line[:80]!r}"
        writer.write(b"200 result=1\n")
        await writer.drain()
        return True, f"{a.agi_host}:{a.agi_port}, route ping answered"
    except (OSError, TimeoutError) as exc:
        return False, f"{a.agi_host}:{a.agi_port}: {exc or 'timeout'}"
    finally:
        writer.close()


async def check_database(settings: Settings, timeout: float) -> Result:
    if settings.on_postgresql:
        ok, detail = await asyncio.to_thread(probe_postgresql, str(settings.db_location), timeout)
        return ok, detail.replace(str(settings.db_location), settings.db_shown)
    ok, detail = await asyncio.to_thread(probe_write_lock, settings.db_path, timeout)
    return ok, detail if ok else f"{detail} (another process holds the database?)"


def check_disk(settings: Settings) -> Result:
    disk = disk_space(settings.state_dir, settings.disk_alarm_mb)
    detail = f"{disk.free_mb} MB free in {settings.state_dir}"
    return disk.ok, detail if disk.ok else f"{detail}, below {disk.alarm_mb} MB: free some space"


async def check_server(settings: Settings, timeout: float) -> Result:
    """The running server's own view: are finished calls being committed?"""
    url = f"http://{settings.web.host}:{settings.web.port}/api/v1/health"
    try:
        async with aiohttp.ClientSession() as http, http.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            status = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return False, f"{url}: {exc or type(exc).__name__}"
    if not status.get("db_writes", False):
        return False, (f"calls are not being saved since {status.get('db_failing_since')}: "
                       f"{status.get('db_error')}; {status.get('calls_pending')} waiting in memory")
    return True, f"{url}: saving calls, {status.get('calls_pending', 0)} waiting"


async def run_checks(settings: Settings, timeout: float = 5.0) -> dict[str, Result]:
    ami, ari, agi, db, server = await asyncio.gather(
        check_ami(settings, timeout), check_ari(settings, timeout), check_agi(settings, timeout),
        check_database(settings, timeout), check_server(settings, timeout),
    )
    return {"AMI": ami, "ARI": ari, "FastAGI": agi, "Database": db, "Disk": check_disk(settings),
            "Server": server}

"""The systemd units of ``clinic-pbx install-service`` run as systemd would run them. There is no
systemd to start units here (no PID 1 of its own), so the test does its part: installs the units
below a root, reads each unit's ``[Service]`` lines and runs its commands with the unit's
configuration path mapped into that root (as a chroot would): the Asterisk unit adopts the running
Asterisk and leaves its PIDFile, the server's ``ExecStartPre``/``ExecStart`` start a healthy
server, the check and backup units (oneshot) succeed, and stopping the server the way its unit
does (SIGTERM to the main process only) leaves Asterisk and its calls alone."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pbx.asterisk.embedded import EmbeddedAsterisk
from pbx.outbound.sipp import free_udp_ports
from pbx.settings import Settings
from tests.integration.test_restart_keeps_calls import ServerProcess, write_config

pytestmark = [pytest.mark.integration]

UNIT_CONFIG = "/etc/clinic-pbx/clinic-pbx.toml"


def service_lines(unit: Path) -> dict[str, list[str]]:
    """The ``[Service]`` section's keys, each with its values in order (ExecStartPre may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def command(line: str, root: Path) -> list[str]:
    # the unit names the configuration as the installed system sees it; here it lies under root
    return [arg.replace(UNIT_CONFIG, str(root / UNIT_CONFIG.lstrip("/"))) for arg in shlex.split(line)]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CLINIC_PBX_")}


def run_now(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=clean_env(), cwd="/")


async def run(line: str, root: Path) -> subprocess.CompletedProcess[str]:
    """One ``Exec*`` line, as systemd runs it: its own process, no shell, the unit's environment."""
    return await asyncio.to_thread(run_now, command(line, root))


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd="/", env=clean_env())


async def test_installed_units_run_and_keep_asterisk_apart(asterisk: EmbeddedAsterisk, test_settings: Settings,
                                                           tmp_path: Path) -> None:
    settings = dataclasses.replace(test_settings, database=tmp_path / "crm.sqlite")
    root = tmp_path / "root"
    port = free_udp_ports(1, step=1)
    config = root / UNIT_CONFIG.lstrip("/")
    config.parent.mkdir(parents=True)
    write_config(settings, config, port)
    backups = tmp_path / "backups"
    config.write_text(f'backup_dir = "{backups}"\n' + config.read_text())
    cli = str(Path(sys.executable).parent / "clinic-pbx")
    installed = await asyncio.to_thread(run_now, [cli, "--config", str(config), "install-service", "--root", str(root)])
    assert installed.returncode == 0, installed.stderr
    assert config.read_text().startswith(f'backup_dir = "{backups}"')  # the settings given, kept
    units = root / "etc" / "systemd" / "system"

    # the Asterisk unit (Type=forking): adopts the running Asterisk, its PIDFile names it
    ast_unit = service_lines(units / "clinic-pbx-asterisk.service")
    pid0 = asterisk.pid()
    started = await run(ast_unit["ExecStart"][0], root)
    assert started.returncode == 0, started.stderr
    assert asterisk.pid_file == Path(ast_unit["PIDFile"][0])  # asterisk.pid() reads it (and checks the process)
    assert asterisk.pid() == pid0 is not None

    # the server unit: ExecStartPre (migrate), then ExecStart (run) as the main process
    srv_unit = service_lines(units / "clinic-pbx.service")
    for pre in srv_unit["ExecStartPre"]:
        done = await run(pre, root)
        assert done.returncode == 0, done.stderr
    assert srv_unit["KillMode"] == ["process"]
    server = ServerProcess(config, port, tmp_path / "server.log")
    server.proc = await asyncio.to_thread(spawn, command(srv_unit["ExecStart"][0], root), server.log)
    try:
        await server.wait_healthy()
        # the timer's oneshot units
        check = await run(service_lines(units / "clinic-pbx-check.service")["ExecStart"][0], root)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "FAIL" not in check.stdout and "OK" in check.stdout, check.stdout
        backup = await run(service_lines(units / "clinic-pbx-backup.service")["ExecStart"][0], root)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert [p for p in backups.iterdir() if (p / "crm.sqlite").exists()], list(backups.iterdir())
        # systemctl stop clinic-pbx: SIGTERM to the main process, which ends within TimeoutStopSec
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(float(srv_unit["TimeoutStopSec"][0])) == 0, server.log.read_text()[-2000:]
        assert asterisk.pid() == pid0  # Asterisk (and any call on it) untouched
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)

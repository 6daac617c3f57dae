"""systemd units for running clinic-pbx on the clinic's box for years (``clinic-pbx
install-service``): the embedded Asterisk and the server as two services, so a restart or a crash
of one never stops the other (patients' calls go on while the CRM restarts), and a timer that
runs ``clinic-pbx check`` every five minutes (a failure shows in the journal and in
``systemctl --failed``), and a nightly backup with retention (``backup_dir``, ``backup_keep``).

Both run as root: the embedded Asterisk lives in a private root entered with chroot and bind
mounts. The configuration is one file (``/etc/clinic-pbx/clinic-pbx.toml`` by default); logs go to
the journal.
"""

from __future__ import annotations

from pathlib import Path

from pbx.settings import Settings

ASTERISK_UNIT = "clinic-pbx-asterisk.service"
SERVER_UNIT = "clinic-pbx.service"
CHECK_UNIT = "clinic-pbx-check.service"
CHECK_TIMER = "clinic-pbx-check.timer"
BACKUP_UNIT = "clinic-pbx-backup.service"
BACKUP_TIMER = "clinic-pbx-backup.timer"


def render_units(settings: Settings, binary: Path, config: Path) -> dict[str, str]:
    cli = f"{binary} --config {config}"
    after = f"network-online.target {ASTERISK_UNIT}" if settings.asterisk.embedded else "network-online.target"
    pid_file = settings.asterisk_var / "run" / "clinic-pbx-asterisk.pid"
    units = {
        SERVER_UNIT: f"""[Unit]
Description=clinic-pbx: the clinic's telephony server and CRM
Documentation=file://{binary.parent.parent.parent}/README.md
After={after}
Wants={after}

[Service]
Type=simple
# migrations run at start anyway, each in one transaction; here a failed one stops the start
ExecStartPre={cli} migrate
ExecStart={cli} run
Restart=on-failure
RestartSec=2
# the main process only: an Asterisk it had to start itself is never killed with it
KillMode=process
TimeoutStopSec=20
LimitNOFILE=65536
Environment=PYTHONUNBUFFERED=1
UMask=0077

[Install]
WantedBy=multi-user.target
""",
        CHECK_UNIT: f"""[Unit]
Description=clinic-pbx health check (AMI, ARI, FastAGI, database, disk, the server saving calls)
After={SERVER_UNIT}

[Service]
Type=oneshot
ExecStart={cli} check
""",
        BACKUP_UNIT: f"""[Unit]
Description=clinic-pbx nightly backup (an online copy of the CRM and secrets; old ones pruned)

[Service]
Type=oneshot
ExecStart={cli} backup
UMask=0077
""",
        BACKUP_TIMER: f"""[Unit]
Description=clinic-pbx backup every night at 03:30

[Timer]
OnCalendar=*-*-* 03:30:00
Persistent=true
Unit={BACKUP_UNIT}

[Install]
WantedBy=timers.target
""",
        CHECK_TIMER: f"""[Unit]
Description=Run the clinic-pbx health check every five minutes

[Timer]
OnBootSec=2min
OnUnitActiveSec=5min
Unit={CHECK_UNIT}

[Install]
WantedBy=timers.target
""",
    }
    if settings.asterisk.embedded:
        units[ASTERISK_UNIT] = f"""[Unit]
Description=Asterisk 22 for clinic-pbx (embedded, in its private root)
After=network-online.target
Wants=network-online.target

[Service]
Type=forking
# adopts an Asterisk already running (no call dropped); boots one otherwise
ExecStart={cli} asterisk start
ExecStop={cli} asterisk stop
PIDFile={pid_file}
Restart=on-failure
RestartSec=2
TimeoutStartSec=90
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""
    return units


def install_units(units: dict[str, str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
        written.append(path)
    return written

"""The frozen settings object every part of clinic-pbx is built from.

Sources, later wins: built-in defaults, the TOML file (``clinic-pbx.toml``), environment
variables ``CLINIC_PBX_<SECTION>_<KEY>`` (e.g. ``CLINIC_PBX_WEB_PORT=8081``). Secrets that are
not given anywhere are generated once and kept in ``<state_dir>/secrets.json`` (mode 0600), so
they are never committed and never printed: their fields are excluded from ``repr``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CLINIC_PBX_"


@dataclass(frozen=True)
class AsteriskSettings:
    """Where Asterisk is and how to reach it. All ports are on loopback by default."""

    embedded: bool = True  # clinic-pbx starts and stops its own Asterisk (chroot)
    # a chain's box name (letters, digits, "-"): Asterisk's systemname, the prefix of every
    # uniqueid/linkedid of this box, so that two branches' calls never share a linkedid in the
    # shared CRM; empty for one clinic
    system_name: str = ""
    # a chain's box: the branches (``branches.id``) whose desk phones are on this Asterisk. Its
    # callback robot takes only their requests (and requests of no branch) and rings only their
    # desk phones; empty: every branch (one clinic, one box)
    branches: tuple[int, ...] = ()
    root: Path = PROJECT_DIR / ".local" / "asterisk-root"
    host: str = "127.0.0.1"
    sip_port: int = 5060
    tls_port: int = 0  # SIP over TLS (providers that want it); 0: sip_port + 1
    ami_port: int = 5038
    ami_user: str = "clinic-pbx"
    ami_secret: str = field(default="", repr=False)
    http_port: int = 8088
    ari_user: str = "clinic-pbx"
    ari_password: str = field(default="", repr=False)
    ari_app: str = "clinic-pbx"
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    rtp_start: int = 20000
    rtp_end: int = 20999
    operator_ip: str = "127.0.0.2"
    operator_port: int = 5060
    # desk phones 101..103 get static contacts on 127.0.0.1:<base + n> (tests, demo) instead
    # of registering
    static_phones: bool = True
    phone_port_base: int = 5070
    phone_password: str = field(default="", repr=False)
    ring_seconds: int = 15
    queue_max_wait: int = 120  # seconds a caller waits in a queue before the call ends
    # a patient transferred to a phone nobody answers: rung this long, then back to the
    # administrator who transferred ("transferer") or to the call's queue ("queue")
    transfer_ring_seconds: int = 20
    transfer_return: str = "transferer"
    # the clinic number outgoing calls leave by: the caller ID patients see, and the line the
    # reports' clinic-number filter counts them on (seed 000)
    outbound_line: str = "74951110001"
    # a desk phone takes one call at a time (false only for load benchmarks, where one SIPp
    # "phone" stands for many)
    one_call_per_phone: bool = True
    ami_ping_seconds: float = 10.0
    ami_ping_timeout: float = 5.0
    # a box behind NAT (a clinic's router): the public address providers and remote phones
    # reach, and the networks that are local (comma-separated, e.g. "192.168.1.0/24"); a
    # transport's settings are read at Asterisk's start only (`clinic-pbx asterisk restart`)
    external_address: str = ""
    local_networks: str = ""
    # the address desk phones register to, written into their set-up card and provisioning
    # files (the box's address in the clinic's network); empty: asterisk.host
    phone_server: str = ""
    # an existing Asterisk (embedded = false): the folder of `clinic-pbx asterisk config --out`;
    # set, the server keeps the panel's telephony files there and reloads them over AMI
    include_dir: str = ""
    # SIP scanners (#30): more than ban_failures failed authentications within ban_window seconds
    # from one address ban it for ban_minutes (the clinic's networks and providers never)
    ban_failures: int = 10
    ban_window: float = 60.0
    ban_minutes: float = 60.0
    # a PEM file of CAs trusted for providers' TLS certificates besides the host's list
    tls_extra_ca: str = ""
    # seals the desk phones' SIP passwords for their provisioning files (crm/secret_box.py)
    provisioning_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    cookie_secret: str = field(default="", repr=False)
    # the session cookie only over HTTPS: set true behind a TLS reverse proxy (README, Security)
    secure_cookie: bool = False
    idle_minutes: int = 60  # a session nobody used for this long ends (an open tab alone does not use it)
    session_hours: int = 12  # a session ends this long after the login, whatever happens
    max_connections: int = 512  # open HTTP connections at once; more are closed at once
    # one address's share of them (0: an eighth, at least 8); trusted proxies are exempt
    max_connections_per_address: int = 0
    body_timeout: float = 30.0  # seconds a request may take to send its body
    header_timeout: float = 10.0  # seconds a new connection may take to send its request
    login_attempts: int = 5  # failed logins a minute of one account from one address before 429
    # the reverse proxies whose X-Forwarded-For names the client ("127.0.0.1" behind a local
    # nginx; addresses or networks, comma-separated). Empty: the peer is the client
    trusted_proxies: str = ""
    # /metrics from beyond loopback needs this bearer token (empty: loopback only)
    metrics_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class RobotSettings:
    """The confirmation robot's deployment side (the scenarios are in the panel)."""

    # how Asterisk reaches a patient; {number} is the E.164 number without "+", {trunk} the
    # provider outgoing calls leave by («Настройки → Телефония»; the demo's "operator" without
    # one). The demo and the tests use "Local/{number}@patient-sim" (numbers +7 999 000-00-NN
    # act out scenarios)
    dial: str = "PJSIP/{number}@{trunk}"
    tts_rate: int = 150  # espeak-ng words per minute
    input_timeout: float = 7.0  # seconds of silence after the menu before a retry
    max_errors: int = 3  # invalid keys and silences before the robot gives up
    ring_seconds: int = 30
    tick_seconds: float = 2.0  # how often due jobs and messages are looked at
    public_url: str = "http://127.0.0.1:8080"  # base of the links in messages (/e/<token>)


@dataclass(frozen=True)
class GatewaySettings:
    """HTTP message gateways. A channel without a URL counts as "no account" and the chain
    goes on to the next channel. Requests are JSON POSTs (``body`` is a JSON template whose
    string values "{to}", "{text}", "{reference}", "{channel}" are replaced)."""

    push_url: str = ""
    whatsapp_url: str = ""
    sms_url: str = ""
    token: str = field(default="", repr=False)  # sent as a bearer token
    webhook_token: str = field(default="", repr=False)  # expected on delivery/reply webhooks
    body: str = '{"to": "{to}", "text": "{text}", "reference": "{reference}", "channel": "{channel}"}'
    timeout: float = 10.0
    demo: bool = False  # no provider: messages are logged and count as sent (``make run``)


@dataclass(frozen=True)
class MailSettings:
    """SMTP for the clinic's letters (the callback robot's «Не надо перезванивать» and
    «перезвоните пациенту»). Who receives them is a panel setting («Обратные звонки»)."""

    host: str = ""  # empty: no SMTP; letters stay queued (``demo``: logged and counted as sent)
    port: int = 587
    security: str = "starttls"  # starttls | ssl | none
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = "clinic-pbx@localhost"  # unless a branch sets its own (callback robot settings)
    timeout: float = 15.0
    verify_tls: bool = True  # false only for a server with a self-signed certificate on the LAN
    demo: bool = False


@dataclass(frozen=True)
class Settings:
    state_dir: Path = PROJECT_DIR / ".local" / "state"
    # default: <state_dir>/crm.sqlite; a clinic chain: "postgresql://user@host/db" (README, "Clinic chain")
    database: Path | str | None = None
    clinic_name: str = "Клиника"
    time_zone: str = "Europe/Moscow"
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (one JSON object per line)
    log_file: str = ""  # empty: stderr (the journal under systemd); else a file rotated at log_max_mb
    log_max_mb: int = 50
    log_keep: int = 5  # rotated files kept
    backup_dir: str = ""  # `clinic-pbx backup` and the nightly timer write here (default <state_dir>/backups)
    backup_keep: int = 14  # backups kept there (0: all)
    # the clinic's backup public key (`clinic-pbx backup-key`): backups are encrypted to it and
    # carry the secrets; empty: plain backups of the database alone
    backup_public_key: str = ""
    recordings_format: str = "ogg"  # ogg: finished calls' WAVs re-encoded as Ogg Vorbis; wav: kept as recorded
    recordings_keep_days: int = 0  # recordings older than this are deleted (0: kept for ever)
    # below this much free space in the state folder (database, recordings) health raises an alarm
    disk_alarm_mb: int = 200
    asterisk: AsteriskSettings = AsteriskSettings()
    web: WebSettings = WebSettings()
    robot: RobotSettings = RobotSettings()
    gateway: GatewaySettings = GatewaySettings()
    mail: MailSettings = MailSettings()

    @property
    def db_location(self) -> Path | str:
        """The SQLite file, or the chain's PostgreSQL URL."""
        return self.database or self.state_dir / "crm.sqlite"

    @property
    def db_shown(self) -> str:
        """The database as printed and logged: a URL without its password."""
        if isinstance(self.database, str):
            scheme, _, rest = self.database.partition("://")
            credentials, at, where = rest.rpartition("@")  # the last @: a password may hold one
            if at and ":" in credentials:
                return f"{scheme}://{credentials.split(':', 1)[0]}:***@{where}"
            return self.database
        return str(self.db_location)

    @property
    def on_postgresql(self) -> bool:
        return isinstance(self.database, str)

    @property
    def db_path(self) -> Path:
        """The SQLite file, for what only a file has (backup, restore, the dry run of migrate)."""
        if isinstance(self.database, str):
            raise ValueError("the database is PostgreSQL (a clinic chain): use pg_dump and pg_restore,"
                             " see README, \"Clinic chain\"")
        return self.database or self.state_dir / "crm.sqlite"

    @property
    def asterisk_etc(self) -> Path:
        return self.state_dir / "asterisk" / "etc"

    @property
    def asterisk_var(self) -> Path:
        return self.state_dir / "asterisk" / "var"

    @property
    def recordings_dir(self) -> Path:
        return self.asterisk_var / "spool" / "recordings"

    @property
    def initial_password_file(self) -> Path:
        """The first admin's generated password; deleted at the first successful login."""
        return self.state_dir / "initial-admin-password"

    @property
    def cdr_db_path(self) -> Path:
        return self.asterisk_var / "log" / "master.db"

    @property
    def sounds_dir(self) -> Path:
        return self.asterisk_var / "sounds"


_SECRET_FIELDS = {
    "asterisk": ("ami_secret", "ari_password", "phone_password", "provisioning_key"),
    "web": ("cookie_secret",),
    "gateway": ("webhook_token",),
}


def _coerce(value: str, target: Any) -> Any:
    """Turn an environment string into the type of the default it overrides."""
    if isinstance(target, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if isinstance(target, int):
        return int(value)
    if isinstance(target, float):
        return float(value)
    if isinstance(target, Path):
        return Path(value)
    if isinstance(target, tuple):
        return _ints([v for v in value.split(",") if v.strip()])
    return value


def _ints(raw: Any) -> tuple[int, ...]:
    """A list of ids (a TOML array, or an environment's "2,3"), strictly whole numbers."""
    if not isinstance(raw, list | tuple):
        raise ValueError(f"not a list of numbers: {raw!r}")
    out = []
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, int | str) or not str(v).strip().isdigit():
            raise ValueError(f"not a whole number: {v!r}")
        out.append(int(v))
    return tuple(out)


def _is_path(f: dataclasses.Field[Any], current: Any, raw: Any = None) -> bool:
    if isinstance(raw, str) and raw.startswith(("postgresql://", "postgres://")):
        return False  # a chain's database: a URL, which a Path would mangle
    return isinstance(current, Path) or "Path" in str(f.type)


def _merge(obj: Any, values: dict[str, Any], env_section: str) -> Any:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        current = getattr(obj, f.name)
        if dataclasses.is_dataclass(current):
            sub = values.get(f.name, {})
            if not isinstance(sub, dict):
                raise ValueError(f"[{f.name}] must be a table")
            changes[f.name] = _merge(current, sub, f"{env_section}{f.name.upper()}_")
            continue
        if f.name in values:
            raw = values[f.name]
            changes[f.name] = Path(raw) if _is_path(f, current, raw) else _ints(raw) if isinstance(current, tuple) else raw
        env = os.environ.get(f"{ENV_PREFIX}{env_section}{f.name.upper()}")
        if env is not None:
            changes[f.name] = Path(env) if _is_path(f, current, env) else _coerce(env, current)
    return dataclasses.replace(obj, **changes)


def _load_secrets(state_dir: Path) -> dict[str, str]:
    """Secrets generated once per installation, kept next to the runtime state."""
    path = state_dir / "secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    changed = False
    for section, names in _SECRET_FIELDS.items():
        for name in names:
            key = f"{section}.{name}"
            if not stored.get(key):
                stored[key] = secrets.token_urlsafe(24)
                changed = True
    if changed:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh, indent=1)
        os.replace(tmp, path)
    return stored


def settings_file(path: Path | None = None) -> Path | None:
    """The TOML file the settings come from: ``path`` (``--config``), else ``CLINIC_PBX_CONFIG``,
    else ``clinic-pbx.toml`` in the project; None when that file does not exist."""
    if path is None:
        env_path = os.environ.get(f"{ENV_PREFIX}CONFIG")
        path = Path(env_path) if env_path else PROJECT_DIR / "clinic-pbx.toml"
    return path if path.exists() else None


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Build the frozen settings: defaults < TOML file < environment < ``overrides``."""
    source = settings_file(path)
    values: dict[str, Any] = {}
    if source is not None:
        values = tomllib.loads(source.read_text(encoding="utf-8"))
    settings = _merge(Settings(), values, "")
    if overrides:
        settings = _replace_nested(settings, overrides)
    return with_generated_secrets(settings)


def _replace_nested(settings: Settings, overrides: dict[str, Any]) -> Settings:
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in ("asterisk", "web") and isinstance(value, dict):
            top[key] = dataclasses.replace(getattr(settings, key), **value)
        else:
            top[key] = value
    return dataclasses.replace(settings, **top)


def with_generated_secrets(settings: Settings) -> Settings:
    """Fill every empty secret from the installation's secrets file."""
    stored = _load_secrets(settings.state_dir)
    updated = settings
    for section, names in _SECRET_FIELDS.items():
        sub = getattr(updated, section)
        fill = {n: stored[f"{section}.{n}"] for n in names if not getattr(sub, n)}
        if fill:
            updated = dataclasses.replace(updated, **{section: dataclasses.replace(sub, **fill)})
    return updated

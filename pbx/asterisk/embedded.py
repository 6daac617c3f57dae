"""Runs the embedded Asterisk 22: a Debian sid root under chroot with our rendered config.

The runtime folder ``<state_dir>/asterisk`` (rendered ``etc/`` plus ``var/``) is bind-mounted
into the root at the same absolute path, so a recording path or the CDR database path means the
same file to Asterisk and to clinic-pbx. Asterisk runs in the foreground (``-f``) as our child,
so its PID is the one we started and stopping it is deterministic.

A running Asterisk is adopted, never restarted: patients' calls must outlive a crash, an
upgrade or a Ctrl-C of clinic-pbx. ``start()`` finds a healthy Asterisk of this runtime folder,
renders the configuration and reloads Asterisk only if a file changed; ``restart()`` is the
one explicit way to boot a fresh Asterisk.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from pbx.asterisk.config import render_config
from pbx.settings import PROJECT_DIR, Settings

log = logging.getLogger(__name__)

INSTALL_SCRIPT = PROJECT_DIR / "scripts" / "install-asterisk.sh"
VAR_SUBDIRS = ("run", "log/cdr-csv", "lib", "spool/recordings", "cache", "sounds")


class AsteriskError(RuntimeError):
    pass


class EmbeddedAsterisk:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.asterisk.root
        self.runtime = settings.state_dir / "asterisk"
        self.conf = settings.asterisk_etc / "asterisk.conf"
        self.pid_file = settings.asterisk_var / "run" / "clinic-pbx-asterisk.pid"
        self.stdout_log = settings.asterisk_var / "log" / "stdout.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.adopted = False  # the last start() found Asterisk running and kept it

    # ---- installation -------------------------------------------------------------------
    @property
    def installed(self) -> bool:
        return (self.root / "usr" / "sbin" / "asterisk").exists()

    def install(self) -> None:
        """Build the sid root if it is missing (idempotent; about 30-50 s the first time)."""
        if self.installed:
            return
        subprocess.run([str(INSTALL_SCRIPT), str(self.root)], check=True)

    # ---- helpers ------------------------------------------------------------------------
    def _mount(self) -> None:
        target = Path(str(self.root) + str(self.runtime))
        target.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mountpoint", "-q", str(target)]).returncode != 0:
            subprocess.run(["mount", "--bind", str(self.runtime), str(target)], check=True)

    def _umount(self) -> None:
        target = Path(str(self.root) + str(self.runtime))
        if target.exists() and subprocess.run(["mountpoint", "-q", str(target)]).returncode == 0:
            subprocess.run(["umount", str(target)], check=False)

    def rx(self, command: str, timeout: float = 10.0) -> str:
        """Run an Asterisk CLI command through the control socket."""
        res = subprocess.run(
            ["chroot", str(self.root), "/usr/sbin/asterisk", "-C", str(self.conf), "-rx", command],
            capture_output=True,
            timeout=timeout,
            text=True,
        )
        if res.returncode != 0:
            raise AsteriskError(f"asterisk -rx {command!r} failed: {res.stderr.strip()}")
        return res.stdout

    def pid(self) -> int | None:
        """The PID of our Asterisk if it is alive (a recycled PID of another program is not)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"asterisk" in cmdline else None

    def healthy(self) -> bool:
        """Asterisk answers on its control socket and has finished booting."""
        try:
            return "System uptime" in self.rx("core show uptime", timeout=5)
        except (AsteriskError, subprocess.TimeoutExpired, OSError):
            return False

    @property
    def running(self) -> bool:
        return self.pid() is not None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> int:
        """Adopt the running Asterisk (reloading a changed configuration), or render the config,
        start a new one and wait until it is fully booted. Never stops a healthy Asterisk."""
        if not self.installed:
            raise AsteriskError(
                f"Asterisk is not installed in {self.root}; run {INSTALL_SCRIPT} (as root)"
            )
        pid = self.pid()
        if pid is not None:
            if self.healthy():
                return self._adopt(pid)
            log.warning("Asterisk pid %s does not answer on its control socket: restarting it", pid)
            self.stop()
        return self._boot(timeout)

    def restart(self, timeout: float = 30.0) -> int:
        """Stop Asterisk (ending every call) and boot a fresh one: only ever asked for."""
        self.stop()
        return self.start(timeout)

    def _adopt(self, pid: int) -> int:
        before = self._config_snapshot()
        render_config(self.settings)
        changed = sorted(n for n, text in self._config_snapshot().items() if before.get(n) != text)
        if changed:
            # `core reload` re-reads every module's configuration; calls in progress go on
            self.rx("core reload")
            log.info("adopted Asterisk pid %s; reloaded changed config: %s", pid, ", ".join(changed))
        else:
            log.info("adopted the running Asterisk pid %s (config unchanged)", pid)
        self.adopted = True
        return pid

    def _config_snapshot(self) -> dict[str, str]:
        etc = self.settings.asterisk_etc
        return {f.name: f.read_text(encoding="utf-8") for f in sorted(etc.glob("*.conf"))} if etc.exists() else {}

    def _boot(self, timeout: float) -> int:
        self.adopted = False
        render_config(self.settings)
        for sub in VAR_SUBDIRS:
            (self.settings.asterisk_var / sub).mkdir(parents=True, exist_ok=True)
        self._retire_old_cdr_db()
        ctl = self.settings.asterisk_var / "run" / "asterisk.ctl"
        ctl.unlink(missing_ok=True)
        self._mount()
        t0 = time.monotonic()
        out = open(self.stdout_log, "ab")  # noqa: SIM115 - handed to the child process
        try:
            self._proc = subprocess.Popen(
                ["chroot", str(self.root), "/usr/sbin/asterisk", "-C", str(self.conf), "-f", "-n"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not Asterisk
            )
        finally:
            out.close()
        self.pid_file.write_text(str(self._proc.pid))
        while not ctl.exists():
            if self._proc.poll() is not None:
                raise AsteriskError(f"Asterisk exited at start: {self._tail()}")
            if time.monotonic() - t0 > timeout:
                raise AsteriskError("Asterisk did not open its control socket in time")
            time.sleep(0.05)
        self.rx("core waitfullybooted", timeout=max(1.0, timeout - (time.monotonic() - t0)))
        log.info("Asterisk pid %s fully booted in %.2f s", self._proc.pid, time.monotonic() - t0)
        return self._proc.pid

    def stop(self, timeout: float = 15.0) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                self.rx("core stop now", timeout=5)
            except (AsteriskError, subprocess.TimeoutExpired):
                os.kill(pid, 15)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.pid == pid:
                    if self._proc.poll() is not None:
                        break
                else:
                    try:
                        os.kill(pid, 0)
                    except OSError:
                        break
                time.sleep(0.05)
            else:
                log.warning("Asterisk %s did not stop in %.0f s; killing it", pid, timeout)
                os.kill(pid, 9)
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        self._umount()

    def _retire_old_cdr_db(self) -> None:
        """cdr_sqlite3_custom never alters an existing table: when our column list grew, move
        the old database aside (kept, never deleted) so Asterisk creates the new one."""
        db = self.settings.cdr_db_path
        if not db.exists():
            return
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                cols = {row[1] for row in con.execute("PRAGMA table_info(cdr)")}
            finally:
                con.close()
        except sqlite3.Error:
            cols = set()
        wanted = set()
        conf = (self.settings.asterisk_etc / "cdr_sqlite3_custom.conf").read_text()
        for line in conf.splitlines():
            if line.startswith("columns"):
                wanted = {c.strip() for c in line.split("=", 1)[1].split(",")}
        if cols and wanted and not wanted <= cols:
            db.rename(db.with_name(f"master-{int(time.time())}.db"))

    def last_words(self) -> str:
        """Why the Asterisk we started is gone, as far as we can tell: how it ended (reaped here:
        no zombie is left), then the last line it wrote."""
        how = ""
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            how = f"убит сигналом {-code}" if code < 0 else f"завершился с кодом {code}"
        last = self._tail(1).strip()
        return "; ".join(x for x in (how, last[:200]) if x)

    def _tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.stdout_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def install_sound(self, src: Path, name: str | None = None) -> Path:
        """Copy a prompt into the folder Asterisk can read; returns the path without suffix."""
        dst_dir = self.settings.sounds_dir
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / (name or src.name)
        shutil.copyfile(src, dst)
        return dst.with_suffix("")

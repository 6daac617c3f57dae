"""The server process's own safety: private files, enough file handles, a state folder that
no other local user can read (patients' data, password hashes, secrets); and its heap settled
after startup."""

from __future__ import annotations

import gc
import logging
import os
import resource
import stat
from pathlib import Path

log = logging.getLogger(__name__)
OPEN_FILES = 65536


def private_files() -> None:
    """Every file the process creates from here on is 0600, every folder 0700."""
    os.umask(0o077)


def settle_heap() -> int:
    """Move what startup built (modules, the app, its templates and caches: it lives as long as
    the process) out of the garbage collector's full passes, which otherwise walk all of it
    while calls wait (a full pass of 32-72 ms held a call's commit at 1M calls, bench/README.md
    stop 45); a pass then walks only what came since. Returns how many objects were moved."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def raise_open_files(wanted: int = OPEN_FILES) -> int:
    """Raise the soft open-file limit towards ``wanted`` (within the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft


def secure_state_dir(state_dir: Path, files: tuple[Path, ...] = ()) -> list[str]:
    """Make the state folder 0700 and check that it and the given files (the CRM database,
    the secrets) are not open to other local users; returns the warnings logged."""
    warnings = []
    state_dir.mkdir(parents=True, exist_ok=True)
    if stat.S_IMODE(state_dir.stat().st_mode) & 0o077:
        try:
            state_dir.chmod(0o700)
        except OSError as exc:
            warnings.append(f"{state_dir} is readable by other users and could not be closed: {exc}")
    for path in files:
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if candidate.exists() and stat.S_IMODE(candidate.stat().st_mode) & 0o077:
                mode = oct(stat.S_IMODE(candidate.stat().st_mode))
                try:
                    candidate.chmod(0o600)
                    warnings.append(f"{candidate} was {mode}; now 0600")
                except OSError as exc:
                    warnings.append(f"{candidate} is {mode} and could not be made private: {exc}")
    for line in warnings:
        log.warning("file permissions: %s", line)
    return warnings


class AcceptErrorFilter(logging.Filter):
    """asyncio logs "socket.accept() out of system resource" with a traceback on every
    accept attempt while file handles run out (90,000 lines in 15 s were seen): one line per
    ``every`` seconds with a count is enough."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self.every = every
        self.last = float("-inf")
        self.skipped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "socket.accept() out of system resource" not in str(record.msg):
            return True
        if record.created - self.last < self.every:
            self.skipped += 1
            return False
        record.msg = f"{record.msg} ({self.skipped} more in the last {self.every:.0f} s not logged)"
        record.exc_info, record.exc_text = None, None
        self.last, self.skipped = record.created, 0
        return True


def quiet_accept_errors() -> None:
    logging.getLogger("asyncio").addFilter(AcceptErrorFilter())

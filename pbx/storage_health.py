"""Is the CRM's storage taking writes? Shared by health (the server's own view: are finished
calls being committed?) and ``clinic-pbx check`` (a probe from outside: can the database take a
write lock, is there room on the disk?)."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DiskSpace:
    free_mb: int
    alarm_mb: int

    @property
    def ok(self) -> bool:
        return self.free_mb >= self.alarm_mb


def disk_space(folder: Path, alarm_mb: int) -> DiskSpace:
    """Free space of the file system that holds ``folder`` (the nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return DiskSpace(shutil.disk_usage(folder).free // 2**20, alarm_mb)


def probe_write_lock(db_path: Path, timeout: float) -> tuple[bool, str]:
    """Take and release SQLite's write lock, as the server's writer must. A database locked by
    another process (a backup tool, a stray sqlite3 shell) answers ``locked`` after ``timeout``."""
    if not db_path.exists():
        return False, f"{db_path}: no database"
    try:
        con = sqlite3.connect(db_path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        return False, f"{db_path}: {exc}"
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        version = con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        return True, f"{db_path}, schema {version}"
    except sqlite3.Error as exc:
        return False, f"{db_path}: {exc}"
    finally:
        con.close()

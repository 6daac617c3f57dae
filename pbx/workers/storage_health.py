"""Is there room on the disk for the CRM? Shared by health and ``clinic-pbx check`` (whose
database probe, a write lock taken and released, is ``crm.db.probe_write_lock``)."""

from __future__ import annotations

import shutil
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

"""Checkpoints beside the one writer. SQLite's automatic checkpoint runs inside the COMMIT that
crosses its threshold: that commit writes the WAL's pages back into the database file and syncs
it, tens of milliseconds on a large database (more on a busy disk), while the next finished
call waits for the writer. Here the writer never checkpoints (``wal_autocheckpoint=0``); every
``EVERY`` commits a PASSIVE checkpoint runs on a connection of its own in a thread of its own,
beside the writer (a passive checkpoint takes no lock a writer needs)."""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)
EVERY = 64  # commits between checkpoints: a few MB of WAL at most, about SQLite's own 1000 pages


class Checkpointer:
    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="crm-checkpoint")
        self._running: concurrent.futures.Future[None] | None = None
        self._commits = 0

    def committed(self) -> None:
        """Called after each commit of the writer: a checkpoint is started every ``EVERY``."""
        self._commits += 1
        if self._commits >= EVERY and (self._running is None or self._running.done()):
            self._commits = 0
            self._running = self._thread.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # another process holds it: the next one will do
            log.info("WAL checkpoint skipped: %s", exc)

    def close(self) -> None:
        self._thread.shutdown(wait=True)  # a checkpoint running ends before its connection
        self._conn.close()

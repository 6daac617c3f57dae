"""#35: a power cut loses nothing that was saved. In WAL mode with ``synchronous=NORMAL`` a
commit reaches the disk only at the next checkpoint; the writer and the chain's outbox must
sync every commit (FULL), the reading connections need not."""

from __future__ import annotations

from pathlib import Path

from crm.clock import SettableClock
from crm.db import Database
from crm.local_outbox import LocalOutbox

FULL, NORMAL = 2, 1


async def test_the_writer_syncs_every_commit(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite", SettableClock(1_767_225_600.0))
    await db.open()
    try:
        assert await db.writer_synchronous() == FULL
        assert (await db.fetchone("PRAGMA synchronous"))[0] == NORMAL  # the reading connection, as it was
        assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"
    finally:
        await db.close()


def test_the_chain_outbox_syncs_every_commit(tmp_path: Path) -> None:
    box = LocalOutbox(tmp_path / "outbox.sqlite")
    try:
        assert box.synchronous() == FULL
    finally:
        box.close()

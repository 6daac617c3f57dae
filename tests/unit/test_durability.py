"""#35: a power cut loses nothing that was saved. In WAL mode with ``synchronous=NORMAL`` a
commit reaches the disk only at the next checkpoint; the writer and the chain's outbox must
sync every commit (FULL), the reading connections need not."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crm import wal
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


async def test_checkpoints_run_beside_the_writer(tmp_path: Path) -> None:
    """#31: the writer never checkpoints inside a commit (a large database's checkpoint held the
    next finished call for tens of milliseconds); a checkpoint runs beside it every few dozen
    commits, so the WAL's pages still reach the database file."""
    path = tmp_path / "crm.sqlite"
    db = Database(path, SettableClock(1_767_225_600.0))
    await db.open()
    try:
        async with db.transaction() as tx:
            assert (await (await tx.execute("PRAGMA wal_autocheckpoint")).fetchone())[0] == 0
            await tx.execute("CREATE TABLE filler (x BLOB)")
        before = path.stat().st_size
        for _ in range(3 * wal.EVERY):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO filler VALUES (randomblob(8000))")
        deadline = asyncio.get_running_loop().time() + 10
        while path.stat().st_size < before + wal.EVERY * 8000:  # written back into the database file
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint ran"
            await asyncio.sleep(0.05)
    finally:
        await db.close()

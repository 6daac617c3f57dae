"""The write transaction's end, shared by both storages (crm/db.py's SQLite and crm/pg.py's
PostgreSQL): the body's statements, then COMMIT, or ROLLBACK when the body fails or the
COMMIT is refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")


@asynccontextmanager
async def committed(conn: Any, tx: T, rollback: Callable[[Any], Awaitable[None]],
                    still_open: Callable[[], bool]) -> AsyncIterator[T]:
    """``conn`` has begun a transaction; ``tx`` is what the body writes through; ``still_open``
    says whether the connection is still inside a transaction after a COMMIT went wrong."""
    try:
        yield tx
    except BaseException:
        await rollback(conn)
        raise
    # the driver runs a statement in its own thread or socket whatever happens to the awaiting
    # task, so a COMMIT is waited for even when the task is cancelled meanwhile (a stopping
    # server): a ROLLBACK queued behind a COMMIT that went through would fail
    commit = asyncio.ensure_future(conn.execute("COMMIT"))
    try:
        await asyncio.shield(commit)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await commit
        if still_open():
            await rollback(conn)
        raise
    except BaseException:
        # a COMMIT refused (disk full, busy) may leave the transaction open: end it, or every
        # later BEGIN on the one writer connection would fail for good
        if still_open():
            await rollback(conn)
        raise

"""Background computations in a process of their own (#31): the reports' stored days and
«История обращений»'s are computed by a child process reading the SQLite file on its own
read-only connection, and only their rows come back for the one writer to swap in.

Why a process: computed in a thread of the server, a busy day's totals and grouping hold the
interpreter's lock for tens of milliseconds at a time, and every hop of a call's commit (event
loop, writer thread) waits behind it: at 1M calls a call's commit took up to 0.3 s while the
minute's pass ran, with no write transaction of the pass in its way (bench/README.md, stop 42).

The child lives for one pass (``apart``), at a lower priority; it is asked one function at a
time over its stdin/stdout (length-prefixed pickles; the functions are crm's own, named by
module). A PostgreSQL chain computes in its server's reads as before (``InProcess``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import sqlite3
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from crm.clock import SettableClock
from crm.db import BUSY_TIMEOUT_MS, Database, Reader

log = logging.getLogger(__name__)
T = TypeVar("T")
PROJECT = Path(__file__).resolve().parent.parent
NICE = 10  # background work: the server's calls and pages come first on a small box
CLOSE_WAIT = 5.0
PYTHON = ""  # the child's interpreter: this one's (a test names another)


class Computer(Protocol):
    """Where a background pass computes: ``read`` a ``Database.read`` function, ``run`` an async
    function of a read-only database."""

    async def read(self, fn: Callable[[Reader], T]) -> T: ...

    async def run(self, fn: Callable[[Any], Awaitable[T]]) -> T: ...


class InProcess:
    """The server's own reads (PostgreSQL, or where no child can be started)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def read(self, fn: Callable[[Reader], T]) -> T:
        return await self.db.read(fn)

    async def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        return await fn(self.db)


class ChildFailed(RuntimeError):
    """The child raised (its traceback is the message) or died."""


class Beside:
    """A child process computing from the SQLite file, started at the first question."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._unanswered = False  # a question left without its answer (cancelled): the child is busy

    async def read(self, fn: Callable[[Reader], T]) -> T:
        return await self._ask("read", fn)

    async def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        return await self._ask("run", fn)

    async def _ask(self, kind: str, fn: Any) -> Any:
        data = pickle.dumps((kind, fn, self.db.clock.now()), protocol=pickle.HIGHEST_PROTOCOL)
        async with self._lock:
            if self._unanswered and self._proc is not None:  # an abandoned question's answer would come first
                _kill(self._proc)
                self._proc = None
            proc = await self._started()
            assert proc.stdin is not None and proc.stdout is not None
            self._unanswered = True
            try:
                proc.stdin.write(len(data).to_bytes(8, "big") + data)
                await proc.stdin.drain()
                size = int.from_bytes(await proc.stdout.readexactly(8), "big")
                ok, value = pickle.loads(await proc.stdout.readexactly(size))
                self._unanswered = False
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._proc = None
                raise ChildFailed(f"the computing process ended: {exc!r}") from exc
        if not ok:
            raise ChildFailed(value)
        return value

    async def _started(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT), env.get("PYTHONPATH", "")) if p)
            self._proc = await asyncio.create_subprocess_exec(
                PYTHON or sys.executable, "-m", "crm.beside", str(self.db.path), env=env, limit=2**20,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return self._proc

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if self._unanswered:  # stopped mid-question (the server stopping): no need to finish it
            _kill(proc)
        else:
            assert proc.stdin is not None
            proc.stdin.close()  # its loop ends at the end of its input
        try:
            await asyncio.wait_for(proc.wait(), CLOSE_WAIT)
        except TimeoutError:
            log.warning("the computing process did not end in %.0f s: killed", CLOSE_WAIT)
            _kill(proc)
            await proc.wait()
        except asyncio.CancelledError:
            _kill(proc)
            raise


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


@asynccontextmanager
async def apart(db: Any) -> AsyncIterator[Computer]:
    """A pass's computer: a child process for an SQLite database, the server itself otherwise."""
    if not isinstance(db, Database):
        yield InProcess(db)
        return
    child = Beside(db)
    try:
        yield child
    finally:
        await child.close()


class ReadOnly:
    """The child's database: the read half of ``Database`` on one read-only connection (blocking
    calls are fine here: the child has nothing else to do)."""

    BUSY: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
    UNREACHABLE = BUSY

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = SettableClock(0.0)
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _rows(self, sql: str, params: Any) -> sqlite3.Cursor:
        cur = self._conn.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, tuple(params))

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        return self._rows(sql, params).fetchall()

    async def fetchone(self, sql: str, params: Any = ()) -> Any:
        return self._rows(sql, params).fetchone()

    async def fetch_tuples(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def query_now(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    async def read(self, fn: Callable[[Reader], T]) -> T:
        return self.read_now(fn)

    def read_now(self, fn: Callable[[Reader], T]) -> T:
        self._conn.execute("BEGIN")
        try:
            return fn(Reader(self._conn))
        finally:
            self._conn.execute("COMMIT")


def _recv(inp: BinaryIO) -> Any:
    head = inp.read(8)
    if len(head) < 8:
        return None
    return pickle.loads(inp.read(int.from_bytes(head, "big")))


def serve(path: Path, inp: BinaryIO, out: BinaryIO) -> None:
    """The child's loop: one question, one answer, until its input ends."""
    db = ReadOnly(path)
    while (question := _recv(inp)) is not None:
        kind, fn, now = question
        db.clock.set(now)
        try:
            answer = (True, db.read_now(fn) if kind == "read" else asyncio.run(fn(db)))
        except Exception:
            answer = (False, traceback.format_exc())
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "big") + data)
        out.flush()


def main() -> None:
    with contextlib.suppress(OSError):
        os.nice(NICE)
    logging.basicConfig(level=logging.WARNING, format="crm.beside: %(levelname)s %(name)s: %(message)s")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to the log, never into the answers
    serve(Path(sys.argv[1]), sys.stdin.buffer, out)


if __name__ == "__main__":
    main()

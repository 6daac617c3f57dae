"""SQLite storage: one writer connection, WAL, numbered migrations, one transaction per change.

Every write goes through ``Database.transaction()``, which serialises writers on one connection
(SQLite allows one writer anyway; queuing here avoids ``database is locked`` retries) and
commits or rolls back the whole multi-row change. Reads use a separate connection, which WAL
lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from crm.clock import Clock, SystemClock
from crm.rules import windows
from crm.transactions import committed
from crm.wal import Checkpointer

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
OPPORTUNISTIC_WAIT_MS = 50
WRITER_SYNCHRONOUS = "FULL"
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # the reading connection's (it writes nothing)
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
)


def iso_stamp(ts: float) -> str:
    """The audit stamp stored in ``created_at``/``updated_at`` columns: UTC, milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class Tx:
    """One open write transaction: ``execute`` as on the connection, and ``stamp()``, the audit
    time from the database's one clock (so a test's settable clock moves every stamp too)."""

    __slots__ = ("_conn", "_clock")
    # a claim's subquery clause that skips rows another transaction holds: nothing here, SQLite's
    # one writer at a time (BEGIN IMMEDIATE) already serialises claims, across processes too
    skip_locked = ""
    for_update = ""  # a row locked till the commit: SQLite's writer holds the whole database already

    def __init__(self, conn: aiosqlite.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._conn.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> Any:
        """Many rows in one hop to the database's thread (one statement per row costs a hop each)."""
        return self._conn.executemany(sql, [tuple(r) for r in rows])

    def stamp(self) -> str:
        return iso_stamp(self._clock.now())


T = TypeVar("T")


class Reader:
    """The read connection as a read function sees it inside ``Database.read``: plain sqlite3
    calls in the reading thread, so a function of many statements costs one thread hop."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def _execute(self, sql: str, params: Iterable[Any]) -> Any:
        return self._conn.execute(sql, tuple(params))

    def fetch_tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self._execute(sql, params).fetchall()

    def fetch_dicts(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows as plain dicts (a fifth of the cost of ``dict(sqlite3.Row)``, which a wide row
        of a 80 000-row export pays 80 000 times)."""
        cur = self._execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every ``NNNN_name.sql`` shipped in crm/migrations, in order."""
    out = []
    for entry in resources.files("crm").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, fill_constants(entry.read_text(encoding="utf-8"))))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return out


def fill_constants(sql: str) -> str:
    """A migration's ``{{NAME}}`` holes filled with the rules' windows (``windows.SQL_CONSTANTS``),
    so a trigger's span and the rule it serves are one number; an unknown name fails loudly."""
    def value(m: re.Match[str]) -> str:
        if m.group(1) not in windows.SQL_CONSTANTS:
            raise RuntimeError(f"a migration names an unknown constant {m.group(1)}")
        return windows.SQL_CONSTANTS[m.group(1)]
    return re.sub(r"\{\{(\w+)\}\}", value, sql)


def applied_versions(path: Path) -> set[int]:
    """The migrations the SQLite database at ``path`` has (none for a new one). Reads only."""
    done: set[int] = set()
    if path.exists():
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").fetchone():
                done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        finally:
            conn.close()
    return done


def pending_migrations(done: set[int]) -> list[tuple[str, list[str]]]:
    """The migrations a start would apply to a database that has ``done``, each with what it
    changes: its leading comment and its statements' first lines (``migrate --dry-run``)."""
    out = []
    for version, name, sql in migration_files():
        if version in done:
            continue
        about = []
        for line in sql.splitlines():
            if not line.startswith("--"):
                break
            about.append(line[2:].strip())
        changes = [" ".join(" ".join(ln.split("--", 1)[0] for ln in st.splitlines()).split())[:100]
                   for st in split_sql(sql)]
        out.append((name, [*about, *(f"  {c}" for c in changes)]))
    return out


class Database:
    # what an opportunistic write raises when another process holds the database (it gave up)
    BUSY: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
    # what it raises while the file cannot be used (a disk gone or full, locked for long)
    UNREACHABLE: tuple[type[Exception], ...] = (sqlite3.OperationalError,)

    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        self.path = path
        self.clock: Clock = clock or SystemClock()
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._now: sqlite3.Connection | None = None
        self._bulk: sqlite3.Connection | None = None  # Database.read's, in its one thread
        self._bulk_thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._write_lock = asyncio.Lock()
        self._checkpoints: Checkpointer | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        # a commit the panel or a robot reports as saved survives a power cut: in WAL mode
        # NORMAL syncs only at a checkpoint (minutes of commits could roll back), FULL at each
        await self._writer.execute(f"PRAGMA synchronous={WRITER_SYNCHRONOUS}")
        await self.migrate()
        await self._writer.execute("PRAGMA wal_autocheckpoint=0")  # crm.wal checkpoints beside it
        self._checkpoints = Checkpointer(self.path, BUSY_TIMEOUT_MS)
        self._reader = await self._connect()
        await self._reader.execute("PRAGMA query_only=ON")
        # For point lookups on the hot path (FastAGI caller lookup): an indexed read takes
        # tens of microseconds, less than the thread hop of aiosqlite, so it runs inline.
        self._now = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        self._now.execute("PRAGMA busy_timeout=1000")
        self._bulk_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="crm-read")
        self._bulk = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                     isolation_level=None)
        self._bulk.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        for pragma in PRAGMAS:
            await conn.execute(pragma)
        return conn

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None
        if self._now is not None:
            self._now.close()
            self._now = None
        if self._bulk_thread is not None:
            self._bulk_thread.shutdown(wait=True)  # a read still running ends before its connection
            self._bulk_thread = None
        if self._bulk is not None:
            self._bulk.close()
            self._bulk = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def migrate(self) -> list[str]:
        """Apply pending migrations, each atomically. Returns the names applied."""
        w = self._require_writer()
        await w.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        async with w.execute("SELECT version FROM schema_migrations") as cur:
            done = {row[0] async for row in cur}
        applied = []
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with self._write_lock:
                await w.execute("BEGIN IMMEDIATE")
                try:
                    # statements one by one: executescript() would commit on its own
                    for statement in split_sql(sql):
                        await w.execute(statement)
                    await w.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        (version, name, self.stamp()),
                    )
                    await w.execute("COMMIT")
                except BaseException:
                    await w.execute("ROLLBACK")
                    raise
            applied.append(name)
            log.info("applied migration %s", name)
        return applied

    def _require_writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise RuntimeError("database is not open")
        return self._writer

    def stamp(self) -> str:
        """The audit stamp for a write made now, from the database's clock."""
        return iso_stamp(self.clock.now())

    @asynccontextmanager
    async def transaction(self, *, opportunistic: bool = False) -> AsyncIterator[Tx]:
        """The one way to write: ``async with db.transaction() as tx: await tx.execute(...)``.
        ``opportunistic``: a write that may as well not happen (a cache: the reports' and the
        contact history's stored days) gives up at once when another process holds the database,
        instead of waiting the busy timeout with the one writer while finished calls queue behind."""
        w = self._require_writer()
        async with self._write_lock:
            if opportunistic:
                await w.execute(f"PRAGMA busy_timeout={OPPORTUNISTIC_WAIT_MS}")
                try:
                    await w.execute("BEGIN IMMEDIATE")
                finally:
                    await w.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            else:
                await w.execute("BEGIN IMMEDIATE")
            async with committed(w, Tx(w, self.clock), self._rollback, lambda: w.in_transaction) as tx:
                yield tx
        if self._checkpoints is not None:
            self._checkpoints.committed()

    @staticmethod
    async def _rollback(w: aiosqlite.Connection) -> None:
        try:
            await w.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:  # nothing left to roll back: it had ended
            log.info("rollback: %s", exc)

    # Each of these is one hop to the connection's thread (aiosqlite's execute, fetch and close
    # of a cursor are three, ~0.1-0.25 ms each: a page's session, shift and filter lookups paid
    # for them on every request). ``_execute`` is aiosqlite's own runner (version pinned).
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        r = self._reader or self._require_writer()
        return await r._execute(_fetch_all, r._conn, sql, tuple(params), True)

    async def fetch_tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Plain tuples, for many rows read by position (a Row object per row costs more)."""
        r = self._reader or self._require_writer()
        return await r._execute(_fetch_all, r._conn, sql, tuple(params), False)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        r = self._reader or self._require_writer()
        return await r._execute(_fetch_one, r._conn, sql, tuple(params))

    async def read(self, fn: Callable[[Reader], T]) -> T:
        """Run a whole read function (many statements, their rows turned into results) in the
        reading thread: one hop instead of one per statement (~0.25 ms each through aiosqlite).
        Its statements see one snapshot: they run in one read transaction."""
        if self._bulk is None or self._bulk_thread is None:
            raise RuntimeError("database is not open")
        conn = self._bulk

        def run() -> T:
            conn.execute("BEGIN")
            try:
                return fn(Reader(conn))
            finally:
                conn.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._bulk_thread, run)

    def query_now(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """A small indexed read, inline (no thread hop). Only for point lookups."""
        if self._now is None:
            raise RuntimeError("database is not open")
        return self._now.execute(sql, tuple(params)).fetchall()

    async def writer_synchronous(self) -> int:
        """The writer's ``PRAGMA synchronous`` as SQLite reads it back (2: FULL)."""
        cur = await self._require_writer().execute("PRAGMA synchronous")
        row = await cur.fetchone()
        return int(row[0]) if row else -1

    async def ping(self) -> bool:
        try:
            return (await self.fetchone("SELECT 1")) is not None
        except Exception:
            return False


def _fetch_all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...], rows: bool) -> list[Any]:
    cur = conn.execute(sql, params)
    try:
        if not rows:
            cur.row_factory = None
        return cur.fetchall()
    finally:
        cur.close()


def _fetch_one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    cur = conn.execute(sql, params)
    try:
        return cur.fetchone()
    finally:
        cur.close()


def split_sql(script: str) -> list[str]:
    """Split a migration into statements. Migrations keep ``;`` out of string literals and
    comments, which keeps this trivially correct; a ``CREATE TRIGGER ... BEGIN ... END`` block
    (whose body has its own ``;``) stays one statement."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    out: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        if pending:
            pending += ";" + piece
            if piece.strip().upper() == "END":
                out.append(pending.strip())
                pending = ""
            continue
        if piece.strip().upper().startswith("CREATE TRIGGER"):
            pending = piece
        elif piece.strip():
            out.append(piece.strip())
    if pending:
        raise ValueError("a CREATE TRIGGER without its END")
    return out


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

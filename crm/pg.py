"""PostgreSQL storage for a clinic chain: the same doors as crm/db.py's SQLite ``Database``
(``transaction``, ``fetchall``/``fetchone``/``fetch_tuples``, ``read``, ``query_now``), the same
numbered migrations translated by crm/dialect.py, psycopg 3 underneath.

Several processes (one per branch) write to one PostgreSQL: each keeps one writer connection
(its writes still queue in order, as with SQLite), the migrations run under an advisory lock so
that two processes starting together apply them once, and an opportunistic transaction (a
cache's) gives up after a short ``lock_timeout`` instead of waiting behind another process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import pq

from crm import dialect
from crm.aio import cancel_and_wait
from crm.clock import Clock, SystemClock
from crm.db import iso_stamp, migration_files, split_sql
from crm.local_copy import LocalCopy
from crm.pg_wire import Reader, Result, Tx, clean_params, configure, row_factory, run_statement
from crm.transactions import committed

log = logging.getLogger(__name__)

OPPORTUNISTIC_WAIT_MS = 50
# a dead link is noticed in seconds, not after TCP's quarter of an hour of retransmissions
CONNECT_OPTIONS: dict[str, Any] = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
                                   "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 10000}
# the inline lookups' connection gives up fast: it runs on the event loop
NOW_OPTIONS: dict[str, Any] = {**CONNECT_OPTIONS, "connect_timeout": 2, "tcp_user_timeout": 1000}
RETRY_CENTRE_SECONDS = 5.0  # while unreachable, the centre is tried again this often
COPY_REFRESH_SECONDS = 60.0
MIGRATION_LOCK = 0x636C696E
LIVE_CHANNEL = "clinic_pbx_live"  # LISTEN/NOTIFY: live cards between a chain's processes
MAX_NOTIFY_BYTES = 7900  # PostgreSQL refuses a payload of 8000 bytes or more  # pg_advisory_xact_lock key: "clin"
T = TypeVar("T")


class PgDatabase:
    """The CRM on PostgreSQL (``database = "postgresql://…"``)."""

    # an opportunistic write's lock_timeout ran out: another box holds the rows
    BUSY: tuple[type[Exception], ...] = (psycopg.errors.LockNotAvailable,)
    # the centre unreachable (stopped, the network down): psycopg's connection errors
    UNREACHABLE: tuple[type[Exception], ...] = (psycopg.OperationalError,)

    def __init__(self, url: str, clock: Clock | None = None, local_copy: Path | None = None) -> None:
        self.url = url
        self.copy = LocalCopy(local_copy)
        self.centre_unreachable_since: float | None = None  # set while inline lookups fail
        self._copy_task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[str | None], None]] = []
        self._listen_task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the live channel is listened to
        self.path = None  # no file: backups are pg_dump's (README, "Clinic chain")
        self.clock: Clock = clock or SystemClock()
        self._writer: psycopg.AsyncConnection[Any] | None = None
        self._reader: psycopg.AsyncConnection[Any] | None = None
        self._now: psycopg.Connection[Any] | None = None
        self._bulk: psycopg.Connection[Any] | None = None
        self._bulk_thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._write_lock = asyncio.Lock()
        self._ids: frozenset[str] = frozenset()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, row_factory=row_factory,
                                                     **CONNECT_OPTIONS)
        configure(conn)
        return conn

    def _connect_sync(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True, **CONNECT_OPTIONS)
        configure(conn)
        return conn

    @staticmethod
    def _usable(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any] | None) -> bool:
        return conn is not None and not conn.closed and not conn.broken

    async def _writer_now(self) -> psycopg.AsyncConnection[Any]:
        """The writer, connected again if the centre dropped it (a restart, a cut link): the
        call writer's retries then land once PostgreSQL answers again."""
        if self._writer is None:
            raise RuntimeError("database is not open")
        if not self._usable(self._writer):
            log.warning("PostgreSQL: the writer's connection was lost; connecting again")
            with contextlib.suppress(psycopg.Error):
                await self._writer.close()
            self._writer = await self._connect()
        return self._writer

    async def _reader_now(self) -> psycopg.AsyncConnection[Any]:
        if self._reader is None:
            return await self._writer_now()
        if not self._usable(self._reader):
            with contextlib.suppress(psycopg.Error):
                await self._reader.close()
            self._reader = await self._connect()
        return self._reader

    async def open(self) -> None:
        """Connect (and migrate); raises ``psycopg.OperationalError`` when the centre does not
        answer, leaving nothing half open (``pbx.workers.centre_start`` then waits for it)."""
        try:
            await self._open_centre()
        except BaseException:
            await self._close_centre()
            raise
        self.centre_unreachable_since = None
        self.open_copy()
        await self.refresh_copy()
        self._copy_task = asyncio.create_task(self._keep_copy(), name="pg-local-copy")

    def open_copy(self) -> None:
        """The branch's local copy alone, before the centre has answered (a branch started
        during an outage): inline lookups answer from the copy its last run kept."""
        if not self.copy.is_open:
            self.copy.open()
        if self._now is None and self.centre_unreachable_since is None:
            self.centre_unreachable_since = self.clock.now()

    async def _open_centre(self) -> None:
        self._writer = await self._connect()
        await self.migrate()
        self._ids = frozenset(r[0] for r in await (await self._writer.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND column_name = 'id' AND is_identity = 'YES'")).fetchall())
        self._reader = await self._connect()
        loop = asyncio.get_running_loop()
        self._now = await loop.run_in_executor(None, lambda: psycopg.connect(self.url, autocommit=True, **NOW_OPTIONS))
        configure(self._now)
        self._bulk_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="crm-read")
        self._bulk = await loop.run_in_executor(self._bulk_thread, self._connect_sync)

    async def refresh_copy(self) -> bool:
        """Bring the local copy up to date with the centre (in a worker thread)."""
        def run() -> int:
            with psycopg.connect(self.url, **CONNECT_OPTIONS) as source:
                return self.copy.refresh(source, self.clock.now())
        try:
            rows = await asyncio.get_running_loop().run_in_executor(None, run)
        except (psycopg.Error, OSError) as exc:
            log.warning("PostgreSQL: the local copy was not refreshed: %s", exc)
            return False
        log.debug("PostgreSQL: local copy refreshed, %d rows", rows)
        return True

    async def _keep_copy(self) -> None:
        """Refresh the copy every minute; while the centre is unreachable, try it every few seconds."""
        since_refresh = 0.0
        while True:
            await asyncio.sleep(RETRY_CENTRE_SECONDS)
            if self.centre_unreachable_since is not None:
                await self._reach_centre()
                since_refresh = 0.0
                continue
            since_refresh += RETRY_CENTRE_SECONDS
            if since_refresh >= COPY_REFRESH_SECONDS:
                await self.refresh_copy()
                since_refresh = 0.0

    async def notify(self, payload: str) -> bool:
        """Send ``payload`` to every process listening (itself included); False if too long."""
        if len(payload.encode()) > MAX_NOTIFY_BYTES:
            log.warning("live message of %d bytes not sent (PostgreSQL's limit)", len(payload.encode()))
            return False
        await (await self._reader_now()).execute("SELECT pg_notify(%s, %s)", (LIVE_CHANNEL, payload))
        return True

    def listen(self, callback: Callable[[str | None], None]) -> None:
        """``callback(payload)`` for every message on the live channel, in order; ``callback(None)``
        after each (re)connection, when messages may have been missed (the listener resyncs)."""
        self._listeners.append(callback)
        if self._listen_task is None:
            self._listen_task = asyncio.create_task(self._listen(), name="pg-listen")

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **CONNECT_OPTIONS)
                try:
                    await conn.execute(f"LISTEN {LIVE_CHANNEL}")
                    delay = 0.5
                    self.listening.set()
                    self._deliver(None)
                    async for message in conn.notifies():
                        self._deliver(message.payload)
                finally:
                    self.listening.clear()
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
            except (psycopg.Error, OSError) as exc:
                log.warning("PostgreSQL live channel: %s; listening again in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _deliver(self, payload: str | None) -> None:
        for callback in self._listeners:
            try:
                callback(payload)
            except Exception:
                log.exception("live channel listener failed")

    async def close(self) -> None:
        await cancel_and_wait(self._listen_task)
        await cancel_and_wait(self._copy_task)
        self._listen_task = self._copy_task = None
        self.copy.close()
        await self._close_centre()

    async def _close_centre(self) -> None:
        if self._bulk_thread is not None:
            self._bulk_thread.shutdown(wait=True)
            self._bulk_thread = None
        for sync in (self._now, self._bulk):
            if sync is not None:
                sync.close()
        self._now = self._bulk = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
        self._reader = self._writer = None

    async def migrate(self) -> list[str]:
        w = self._require_writer()
        applied: list[str] = []
        async with self._write_lock:
            await w.execute("BEGIN")
            try:
                await w.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await w.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                                " version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
                done = {r[0] for r in await (await w.execute("SELECT version FROM schema_migrations")).fetchall()}
                for version, name, sql in migration_files():
                    if version in done:
                        continue
                    for stmt in split_sql(sql):
                        for pg in dialect.migration(stmt):
                            await w.execute(pg)  # type: ignore[arg-type]
                    await w.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                                    (version, name, self.stamp()))
                    applied.append(name)
                await w.execute("COMMIT")
            except BaseException:
                await w.execute("ROLLBACK")
                raise
        for name in applied:
            log.info("applied migration %s", name)
        return applied

    def _require_writer(self) -> psycopg.AsyncConnection[Any]:
        if self._writer is None:
            raise RuntimeError("database is not open")
        return self._writer

    def stamp(self) -> str:
        return iso_stamp(self.clock.now())

    @asynccontextmanager
    async def transaction(self, *, opportunistic: bool = False) -> AsyncIterator[Tx]:
        async with self._write_lock:
            w = await self._writer_now()
            try:
                await w.execute("BEGIN")
            except psycopg.OperationalError:
                if not w.broken:
                    raise
                w = await self._writer_now()  # dropped while idle (the centre restarted): nothing done yet
                await w.execute("BEGIN")
            async with committed(w, Tx(w, self.clock, self._ids), self._rollback,
                                 lambda: w.info.transaction_status != pq.TransactionStatus.IDLE) as tx:
                if opportunistic:
                    await w.execute(f"SET LOCAL lock_timeout = '{OPPORTUNISTIC_WAIT_MS}ms'")
                yield tx

    @staticmethod
    async def _rollback(w: psycopg.AsyncConnection[Any]) -> None:
        try:
            await w.execute("ROLLBACK")
        except psycopg.Error as exc:
            log.info("rollback: %s", exc)

    async def _read_once(self, sql: str, params: Iterable[Any]) -> Result:
        """A read on the reading connection, once more on a fresh one if the centre had dropped
        it while idle (a read is safe to repeat)."""
        params = tuple(params)
        try:
            return await run_statement(await self._reader_now(), sql, params, frozenset())
        except psycopg.OperationalError:
            if self._reader is None or not self._reader.broken:
                raise
            return await run_statement(await self._reader_now(), sql, params, frozenset())

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return await (await self._read_once(sql, params)).fetchall()

    async def fetch_tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self.fetchall(sql, params)]

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await (await self._read_once(sql, params)).fetchone()

    async def read(self, fn: Callable[[Reader], T]) -> T:  # type: ignore[override]
        if self._bulk is None or self._bulk_thread is None:
            raise RuntimeError("database is not open")

        def attempt() -> T:
            if not self._usable(self._bulk):
                with contextlib.suppress(psycopg.Error):
                    self._bulk.close()  # type: ignore[union-attr]
                self._bulk = self._connect_sync()
            conn = self._bulk
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one snapshot
            try:
                return fn(Reader(conn))
            finally:
                if self._usable(conn):
                    conn.execute("COMMIT")

        def run() -> T:
            try:
                return attempt()
            except psycopg.OperationalError:
                if self._bulk is None or not self._bulk.broken:
                    raise
                return attempt()  # dropped while idle: a read is safe to repeat

        return await asyncio.get_running_loop().run_in_executor(self._bulk_thread, run)

    def query_now(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """A point lookup, inline (FastAGI, the live cards): a round trip to the centre while it
        answers; from its first failure the branch's local copy answers, never waiting on the
        event loop for a dead link, until the background task has connected again."""
        if self._now is None and self.centre_unreachable_since is None:
            raise RuntimeError("database is not open")
        if self.centre_unreachable_since is None:
            try:
                if self._usable(self._now):
                    return self._now.execute(dialect.statement(sql), clean_params(params)).fetchall()
                reason = "the connection was lost"
            except psycopg.OperationalError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.error("PostgreSQL unreachable (%s); lookups answered from the local copy", reason)
            self.centre_unreachable_since = self.clock.now()
        return self.copy.query(sql, params)

    async def _reach_centre(self) -> bool:
        """Connect the inline lookups again (in a worker thread); True once the centre answers."""
        def connect() -> psycopg.Connection[Any]:
            conn = psycopg.connect(self.url, autocommit=True, **NOW_OPTIONS)
            configure(conn)
            return conn
        try:
            fresh = await asyncio.get_running_loop().run_in_executor(None, connect)
        except (psycopg.Error, OSError):
            return False
        old, self._now = self._now, fresh
        if old is not None:
            with contextlib.suppress(psycopg.Error):
                old.close()
        self.centre_unreachable_since = None
        log.warning("PostgreSQL answers again; lookups go to the centre")
        await self.refresh_copy()
        return True

    async def ping(self) -> bool:
        try:
            return (await self.fetchone("SELECT 1")) is not None
        except Exception:
            return False

"""PostgreSQL underneath ``crm.pg.PgDatabase``: rows read by position or name as SQLite's,
statements translated by crm/dialect.py, the write transaction's and the reading thread's
doors, and the two look-ups ``clinic-pbx`` makes without a running server (applied
migrations, ``check``'s probe)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.adapt import Loader

from crm import dialect
from crm.clock import Clock
from crm.db import Reader as BaseReader
from crm.db import iso_stamp


class Row(tuple):  # type: ignore[type-arg]
    """A row read by position or by name, as ``sqlite3.Row`` (``row[0]``, ``row["id"]``,
    ``dict(row)``)."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=1024)
def row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    cls = row_class(tuple(c.name for c in cursor.description or ()))
    return cls


class Number(Loader):
    """``numeric`` (what PostgreSQL's SUM of integers and AVG return) as int or float, as SQLite
    gives them: a Decimal would refuse arithmetic with the code's floats."""

    def load(self, data: Any) -> int | float:
        d = Decimal(bytes(data).decode())
        return int(d) if d == d.to_integral_value() else float(d)


def configure(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("numeric", Number)


class Result:
    """A statement's outcome as the code reads SQLite's cursor: rows, ``rowcount``, ``lastrowid``."""

    __slots__ = ("_rows", "rowcount", "lastrowid", "description")

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None, description: Any) -> None:
        self._rows, self.rowcount, self.lastrowid, self.description = rows, rowcount, lastrowid, description

    async def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[Any]:
        return list(self._rows)


def clean_params(params: Iterable[Any]) -> tuple[Any, ...]:
    """PostgreSQL's text cannot hold NUL, which SQLite's can: a NUL in hostile input (a form
    field, a caller name) becomes U+FFFD rather than failing the whole write."""
    return tuple(p.replace("\x00", "\ufffd") if isinstance(p, str) and "\x00" in p else p for p in params)


async def run_statement(conn: psycopg.AsyncConnection[Any], sql: str, params: Iterable[Any], id_tables: frozenset[str],
               *, many: bool = False) -> Result:
    text = dialect.statement(sql)
    wants_id = False
    if not many and id_tables:
        target = dialect.insert_target(text)
        wants_id = target in id_tables and not dialect.has_returning(text)
        if wants_id:
            text = f"{text.rstrip()} RETURNING id"
    async with conn.cursor(row_factory=row_factory) as cur:
        if many:
            await cur.executemany(text, [clean_params(r) for r in params])
            return Result([], cur.rowcount, None, None)
        await cur.execute(text, clean_params(params))
        rows = await cur.fetchall() if cur.description is not None else []
        lastrowid = None
        if wants_id:
            lastrowid = rows[0][0] if rows else None
            rows = []
        return Result(rows, cur.rowcount, lastrowid, cur.description)


class Tx:
    """An open write transaction, as ``crm.db.Tx``."""

    __slots__ = ("_conn", "_clock", "_ids")
    skip_locked = " FOR UPDATE SKIP LOCKED"  # a claim skips the rows another process's claim holds
    for_update = " FOR UPDATE"

    def __init__(self, conn: psycopg.AsyncConnection[Any], clock: Clock, ids: frozenset[str]) -> None:
        self._conn, self._clock, self._ids = conn, clock, ids

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Result:
        return await run_statement(self._conn, sql, params, self._ids)

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> Result:
        return await run_statement(self._conn, sql, rows, self._ids, many=True)

    def stamp(self) -> str:
        return iso_stamp(self._clock.now())


class Reader(BaseReader):
    """``crm.db.Reader`` on a PostgreSQL connection, in the reading thread: the same reads,
    each statement translated."""

    __slots__ = ()

    def _execute(self, sql: str, params: Iterable[Any]) -> Any:
        return self._conn.execute(dialect.statement(sql), clean_params(params))


def applied_versions(url: str) -> set[int]:
    """The migrations the PostgreSQL database at ``url`` has (none for a new one). Reads only."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:  # type: ignore[index]
            return set()
        return {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}


def probe_postgresql(url: str, timeout: float) -> tuple[bool, str]:
    """What ``clinic-pbx check`` verifies of a chain's database: it answers within ``timeout``,
    accepts writes (a primary, not a standby in recovery: a write is taken and rolled back) and
    has the schema; the detail names the server, the database and the schema version."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout))) as conn:
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                return False, f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}: a standby, read-only"
            version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]  # type: ignore[index]
            conn.execute("CREATE TEMP TABLE clinic_pbx_probe (x int)")  # rolled back on leaving
            return True, (f"PostgreSQL {conn.info.server_version // 10000} at {conn.info.host}:{conn.info.port}"
                          f"/{conn.info.dbname}, schema {version}")
    except psycopg.Error as exc:
        return False, f"PostgreSQL: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"

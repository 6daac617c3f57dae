"""Which storage a setting names: a file path is the embedded SQLite (one clinic), a
``postgresql://`` URL the shared PostgreSQL of a clinic chain."""

from __future__ import annotations

from pathlib import Path

from crm import db as sqlite_db
from crm import pg_wire
from crm.clock import Clock
from crm.db import Database
from crm.pg import PgDatabase

AnyDatabase = Database | PgDatabase


def is_postgresql(location: Path | str) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def database(location: Path | str, clock: Clock | None = None, local_copy: Path | None = None) -> AnyDatabase:
    """``local_copy``: where a chain's branch keeps its copy of who owns which number, for the
    calls that ring while PostgreSQL is unreachable (crm/local_copy.py; in memory without it)."""
    if is_postgresql(location):
        return PgDatabase(str(location), clock, local_copy)
    return Database(Path(location), clock)


def applied_versions(location: Path | str) -> set[int]:
    return pg_wire.applied_versions(str(location)) if is_postgresql(location) else sqlite_db.applied_versions(Path(location))

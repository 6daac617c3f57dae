"""The numbered migrations as files: whole-line comments are dropped and the rest is split on
";", so a ";" in a comment after a statement's text would cut the statement in two (it did,
twice)."""

from __future__ import annotations

import sqlite3

from crm.db import migration_files, split_sql


def problems(name: str, sql: str) -> list[str]:
    out = []
    for n, line in enumerate(sql.splitlines(), start=1):
        if "--" in line and not line.strip().startswith("--") and ";" in line.split("--", 1)[1]:
            out.append(f"{name}:{n}: a ';' in a comment splits the statement")
    out += [f"{name}: {st[:80]}" for st in split_sql(sql) if not sqlite3.complete_statement(st + ";")]
    return out


def test_every_migration_splits_into_whole_statements() -> None:
    assert [p for _, name, sql in migration_files() for p in problems(name, sql)] == []


def test_the_check_bites() -> None:
    bad = "CREATE TABLE t (\n    a TEXT, -- one; two\n    b TEXT\n);\n"
    assert problems("bad.sql", bad) and problems("bad.sql", bad)[0].startswith("bad.sql:2:")
    assert problems("ok.sql", "-- one; two\nCREATE TABLE t (a TEXT);\n") == []

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


def test_the_triggers_windows_come_from_the_rules(monkeypatch) -> None:
    """#28: the spans in the report and «История обращений» triggers are the rules' constants
    (crm/rules/windows.py), filled into the migrations, never literals repeated in SQL."""
    import re
    from importlib import resources

    from crm.db import migration_files
    from crm.rules import windows

    for name in ("0021_report_days.sql", "0023_appeal_days.sql"):
        raw = resources.files("crm").joinpath("migrations", name).read_text(encoding="utf-8")
        statements = "\n".join(line for line in raw.splitlines() if not line.startswith("--"))
        assert "{{" in statements
        assert not re.search(r"(?<![.\d])(86400|1800)(?![.\d])", statements), name  # 86400.0: julianday's unit
    monkeypatch.setitem(windows.SQL_CONSTANTS, "APPOINTMENT_LINK", "777")
    filled = {n: sql for _, n, sql in migration_files()}["0023_appeal_days.sql"]
    assert filled.count("+ 777;") == 8 and "{{" not in filled

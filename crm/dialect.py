"""The SQLite → PostgreSQL dialect layer: the CRM's SQL is written once, in SQLite's dialect (the
embedded default), and translated here for a clinic chain's PostgreSQL (crm/pg.py).

Pure text functions, tested in tests/unit/test_dialect.py. What they translate is what the
code and the migrations use, nothing more general:
- statements: ``?`` placeholders, ``%`` (psycopg's placeholder mark), ``INSERT OR IGNORE``,
  null-safe ``IS`` between values, ``LIKE`` (ASCII-case-insensitive in SQLite), ``julianday``;
- migrations: column types (``REAL`` is 4 bytes in PostgreSQL: epoch seconds need 8),
  ``INTEGER PRIMARY KEY`` ids, ``WITHOUT ROWID``, and SQLite's triggers as PL/pgSQL functions.
"""

from __future__ import annotations

import functools
import re

_LITERAL = re.compile(r"'(?:[^']|'')*'")
# `a IS b` with b neither NULL nor a boolean: SQLite's null-safe equality
_IS = re.compile(r"\bIS\s+(NOT\s+)?(?!NULL\b|TRUE\b|FALSE\b|DISTINCT\b|NOT\b)(?=[\w?(:])", re.IGNORECASE)
_JULIANDAY = re.compile(r"\bjulianday\(([\w.]+)\)", re.IGNORECASE)
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


def _outside_literals(sql: str, fn) -> str:  # type: ignore[no-untyped-def]
    """Apply ``fn`` to the parts of ``sql`` outside its string literals."""
    out, pos = [], 0
    for m in _LITERAL.finditer(sql):
        out.append(fn(sql[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(fn(sql[pos:]))
    return "".join(out)


def _calls(code: str, name: str, rewrite) -> str:  # type: ignore[no-untyped-def]
    """Each call ``name(args)`` in ``code`` replaced by ``rewrite(args)`` (``args``: the
    top-level arguments' text, parentheses and literals counted), or left as it is when
    ``rewrite`` answers None."""
    out, pos = [], 0
    pattern = re.compile(rf"\b{name}\(", re.IGNORECASE)
    while (m := pattern.search(code, pos)) is not None:
        depth, i, args, start = 1, m.end(), [], m.end()
        while i < len(code) and depth:
            ch = code[i]
            if ch == "'":  # a literal: to its closing quote ('' is a quote inside it)
                i = code.index("'", i + 1)
                while code.startswith("''", i):
                    i = code.index("'", i + 2)
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 1:
                args.append(code[start:i].strip())
                start = i + 1
            i += 1
        args.append(code[start:i - 1].strip())
        new = rewrite(args)
        out.append(code[pos:m.start()] + (new if new is not None else code[m.start():i]))
        pos = i
    out.append(code[pos:])
    return "".join(out)


DEFAULT_SEPARATOR = "','"  # GROUP_CONCAT's


def _functions(sql: str) -> str:
    # GROUP_CONCAT(expr[, sep]) is string_agg; SQLite's scalar MAX/MIN of several values are
    # GREATEST/LEAST (which skip NULLs where SQLite answers NULL: the code never passes one)
    sql = _calls(sql, "GROUP_CONCAT", lambda a: f"string_agg(CAST({a[0]} AS text), {(a + [DEFAULT_SEPARATOR])[1]})")
    sql = _calls(sql, "MAX", lambda a: f"GREATEST({', '.join(a)})" if len(a) > 1 else None)
    return _calls(sql, "MIN", lambda a: f"LEAST({', '.join(a)})" if len(a) > 1 else None)


def _expressions(code: str) -> str:
    code = _IS.sub(lambda m: "IS DISTINCT FROM " if m.group(1) else "IS NOT DISTINCT FROM ", code)
    code = _JULIANDAY.sub(r"(extract(epoch FROM CAST(\1 AS timestamptz)) / 86400.0 + 2440587.5)", code)
    return re.sub(r"\bLIKE\b", "ILIKE", code)


@functools.lru_cache(maxsize=4096)  # the code's statements are a few hundred constant texts
def statement(sql: str, *, params: bool = True) -> str:
    """A statement of the code for PostgreSQL. ``params``: it is sent with parameters (psycopg
    then reads ``%`` as its own mark, so every literal one is doubled)."""
    on_conflict = bool(_INSERT_OR_IGNORE.match(sql))
    if on_conflict:
        sql = _INSERT_OR_IGNORE.sub("INSERT INTO", sql, count=1)

    def code(part: str) -> str:
        part = _expressions(part)
        if params:
            part = part.replace("%", "%%").replace("?", "%s")
        return part

    sql = _outside_literals(_functions(sql), code)
    if params:  # inside literals too: psycopg scans the whole text
        sql = _LITERAL.sub(lambda m: m.group(0).replace("%", "%%"), sql)
    if on_conflict:
        m = _RETURNING.search(sql)
        sql = (f"{sql[:m.start()]}ON CONFLICT DO NOTHING {sql[m.start():]}" if m
               else f"{sql.rstrip()} ON CONFLICT DO NOTHING")
    return sql


_TRIGGER = re.compile(
    r"^CREATE\s+TRIGGER\s+(?P<name>\w+)\s+(?P<when>BEFORE|AFTER)\s+(?P<event>INSERT|DELETE|UPDATE(?:\s+OF\s+[\w\s,]+?)?)"
    r"\s+ON\s+(?P<table>\w+)\s*(?:WHEN\s+(?P<cond>.*?))?\s*BEGIN\b(?P<body>.*)\bEND$",
    re.IGNORECASE | re.DOTALL)
_DROP_TRIGGER = re.compile(r"^DROP\s+TRIGGER\s+IF\s+EXISTS\s+(\w+)\s*;?$", re.IGNORECASE)
_RAISE = re.compile(r"SELECT\s+RAISE\(\s*ABORT\s*,\s*('(?:[^']|'')*')\s*\)", re.IGNORECASE)


def _types(ddl: str) -> str:
    ddl = re.sub(r"\bINTEGER\s+PRIMARY\s+KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", ddl,
                 flags=re.IGNORECASE)
    ddl = re.sub(r"\bINTEGER\b", "BIGINT", ddl, flags=re.IGNORECASE)
    ddl = re.sub(r"\bREAL\b", "DOUBLE PRECISION", ddl, flags=re.IGNORECASE)
    ddl = re.sub(r"\bBLOB\b", "BYTEA", ddl, flags=re.IGNORECASE)
    return re.sub(r"\)\s*WITHOUT\s+ROWID\s*$", ")", ddl, flags=re.IGNORECASE)


def migration(stmt: str) -> list[str]:
    """A migration's statement (as ``crm.db.split_sql`` cut it) as PostgreSQL statements: a
    trigger becomes its function and the trigger that runs it for each row."""
    if drop := _DROP_TRIGGER.match(stmt.strip()):
        # PostgreSQL names the table in DROP TRIGGER; the trigger's function (ours: its name
        # with ``_fn``) takes its trigger with it
        return [f"DROP FUNCTION IF EXISTS {drop.group(1)}_fn() CASCADE"]
    m = _TRIGGER.match(stmt.strip())
    if m is None:
        head = stmt.lstrip().upper()
        if head.startswith(("CREATE TABLE", "ALTER TABLE")):
            return [_outside_literals(stmt, _types)]
        return [statement(stmt, params=False)]
    body = _RAISE.sub(r"RAISE EXCEPTION \1", m.group("body").strip())
    body = statement(body, params=False).rstrip().rstrip(";")
    fn = f"{m.group('name')}_fn"
    cond = f" WHEN ({statement(m.group('cond'), params=False)})" if m.group("cond") else ""
    # an AFTER trigger's result is ignored; a BEFORE one lets the row through
    result = ("RETURN NULL" if m.group("when").upper() == "AFTER"
              else "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;\nRETURN NEW")
    return [f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$\nBEGIN\n{body};\n"
            f"{result};\nEND\n$fn$",
            f"CREATE TRIGGER {m.group('name')} {m.group('when')} {m.group('event')} ON {m.group('table')}"
            f" FOR EACH ROW{cond} EXECUTE FUNCTION {fn}()"]


_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


def insert_target(sql: str) -> str | None:
    """The table an INSERT writes to (None for any other statement)."""
    m = _INSERT_INTO.match(sql)
    return m.group(1) if m else None


def has_returning(sql: str) -> bool:
    return bool(_RETURNING.search(_LITERAL.sub("''", sql)))

"""Boundaries that bite:

1. The pure core (the call tracker, the robot flows and escort rules, the seeds' rules, the AMI
   framer, the telephony config renderer) reaches no I/O, directly or through any project module it imports, transitively:
   no asyncio, sockets, threads, subprocesses, files/os, SQL, HTTP, time; and reads no clock
   (``datetime.now``, ``date.today``, ``time.time`` ...): time arrives on the event.
2. Only ``crm/`` writes SQL (reading Asterisk's own CDR database in its adapter aside).

Both checkers are shown a deliberate violation, so a checker that sees nothing fails too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PURE = [ROOT / "pbx" / "calls", ROOT / "pbx" / "robots", ROOT / "crm" / "rules",
        ROOT / "pbx" / "ami" / "framing.py", ROOT / "pbx" / "asterisk" / "render.py"]
FORBIDDEN = {
    "asyncio", "socket", "selectors", "threading", "subprocess", "time", "os", "io", "shutil",
    "tempfile", "pathlib", "signal", "multiprocessing", "ssl", "http", "urllib", "requests",
    "panoramisk", "aiohttp", "aiosqlite", "sqlite3", "asyncpg", "psycopg", "aiosmtplib",
    "pbx.ami.client", "pbx.ari", "pbx.asterisk.embedded", "crm.db", "web", "agi",
}
CLOCK_READS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
               ("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("time", "time_ns")}
PROJECT = ("pbx", "crm", "agi", "web")


def imports_of(path: Path) -> set[str]:
    """Absolute module names a file imports (``from a import b`` also yields ``a.b``, which
    may be a submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def clock_reads(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in CLOCK_READS:
                found.add(f"{node.value.id}.{node.attr}")
    return found


def module_file(name: str, root: Path = ROOT) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reach(files: list[Path], root: Path = ROOT) -> dict[Path, list[str]]:
    """Every project file the given files import, transitively, with the import chain."""
    seen: dict[Path, list[str]] = {f: [str(f.relative_to(root))] for f in files}
    todo = list(files)
    while todo:
        f = todo.pop()
        for name in imports_of(f) if root == ROOT else imports_of_under(f, root):
            if not name.startswith(PROJECT):
                continue
            target = module_file(name, root)
            if target is not None and target not in seen:
                seen[target] = [*seen[f], name]
                todo.append(target)
    return seen


def imports_of_under(path: Path, root: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def violations(files: list[Path], root: Path = ROOT) -> set[str]:
    bad = set()
    for f, chain in reach(files, root).items():
        own = imports_of(f) if root == ROOT else imports_of_under(f, root)
        for name in own:
            if any(name == x or name.startswith(x + ".") for x in FORBIDDEN):
                bad.add(f"{' -> '.join(chain)}: imports {name}")
        for read in clock_reads(f):
            bad.add(f"{' -> '.join(chain)}: reads the clock ({read})")
    return bad


def pure_files() -> list[Path]:
    files: list[Path] = []
    for p in PURE:
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return files


def test_the_pure_core_reaches_no_io_and_no_clock() -> None:
    files = pure_files()
    assert any(f.name == "framing.py" for f in files) and any(f.name == "windows.py" for f in files)
    assert not violations(files), sorted(violations(files))


def test_the_checker_follows_imports_and_sees_clock_reads(tmp_path: Path) -> None:
    (tmp_path / "pbx" / "robots").mkdir(parents=True)
    (tmp_path / "crm").mkdir()
    for pkg in ("pbx", "pbx/robots", "crm"):
        (tmp_path / pkg / "__init__.py").write_text("")
    flow = tmp_path / "pbx" / "robots" / "ivr.py"
    flow.write_text("from crm import escort\n")  # pure-looking, but escort does I/O
    (tmp_path / "crm" / "escort.py").write_text("from crm.db import Database\nimport os\n")
    (tmp_path / "crm" / "db.py").write_text("import aiosqlite\n")
    rules = tmp_path / "crm" / "rules.py"
    rules.write_text("from datetime import datetime\n\ndef f():\n    return datetime.now()\n")
    found = violations([flow, rules], tmp_path)
    assert any("ivr.py -> crm.escort: imports os" in v for v in found), found
    assert any("imports crm.db" in v for v in found), found
    assert any("crm.db: imports aiosqlite" in v for v in found), found
    assert any("reads the clock (datetime.now)" in v for v in found), found


# ---- SQL only in crm/ ------------------------------------------------------------------------
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|INDEX)|PRAGMA\s)", re.DOTALL)  # the project writes SQL upper-case
# Asterisk's own CDR database: read by its adapter, checked by the embedded Asterisk's start
SQL_ALLOWED = {ROOT / "pbx" / "asterisk" / "cdr_db.py", ROOT / "pbx" / "asterisk" / "embedded.py"}


def sql_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            out.append(f"{path.relative_to(path.parents[1])}:{node.lineno}: {node.value[:60]!r}")
    return out


def test_only_crm_writes_sql() -> None:
    files = [f for pkg in ("pbx", "web", "agi") for f in (ROOT / pkg).rglob("*.py") if f not in SQL_ALLOWED]
    found = [s for f in files for s in sql_strings(f)]
    assert not found, found
    assert sql_strings(ROOT / "crm" / "calls.py"), "the checker sees crm's own SQL"


def test_the_sql_checker_sees_a_violation(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    page = tmp_path / "web" / "page.py"
    page.write_text('rows = db.fetchall("SELECT id, name FROM users WHERE active = 1")\n'
                    'label = "Select a patient from the list"\n')
    assert len(sql_strings(page)) == 1


# The storage and the panel stamp and judge time only through the injected clock (a test's
# settable clock moves audit stamps, "today" and due times together); adapters stamp the
# events they receive, and the few listed here time things that are not clinic time.
CLOCK_ALLOWED = {
    ROOT / "crm" / "clock.py",  # the system clock itself
    ROOT / "crm" / "backup.py",  # a backup folder's name when no time is given
    ROOT / "crm" / "demo.py",  # the demo's schedule when no time is given
    ROOT / "web" / "metrics.py",  # the scrape's own timestamp
    ROOT / "web" / "serve.py",  # request durations (monotonic)
}


def test_storage_and_pages_read_time_from_the_one_clock() -> None:
    files = [f for pkg in ("crm", "web") for f in (ROOT / pkg).rglob("*.py") if f not in CLOCK_ALLOWED]
    found = {f"{f.relative_to(ROOT)}: {r}" for f in files for r in clock_reads(f)}
    assert not found, found


async def test_audit_stamps_follow_the_injected_clock(tmp_path: Path) -> None:
    from crm import patients
    from crm.clock import SettableClock
    from crm.db import Database

    clock = SettableClock(1_767_225_600.0)  # 2026-01-01 00:00 UTC
    db = Database(tmp_path / "crm.sqlite", clock)
    await db.open()
    try:
        pid = await patients.add_patient(db, "Иванов", "Иван")
        row = await db.fetchone("SELECT created_at FROM patients WHERE id = ?", (pid,))
        assert row is not None and row[0] == "2026-01-01T00:00:00.000+00:00"
    finally:
        await db.close()


# ---- floors, rooms and sizes (#28) ---------------------------------------------------------------
MAX_MODULE_LINES = 400
MAX_COMPLEXITY = 40  # McCabe, as radon counts it (rank F starts above 40)
MAX_PBX_MODULES = 12  # directly in pbx/: the rest live in rooms named by kind


def upward_imports(root: Path = ROOT) -> list[str]:
    """crm/ is the bottom floor: any import of pbx/, agi/ or web/ from it."""
    found = []
    for f in sorted((root / "crm").rglob("*.py")):
        for name in imports_of(f) if root == ROOT else imports_of_under(f, root):
            if name.split(".")[0] in ("pbx", "agi", "web"):
                found.append(f"{f.relative_to(root)}: imports {name}")
    return found


def pbx_hall(root: Path = ROOT) -> list[str]:
    return sorted(f.name for f in (root / "pbx").glob("*.py") if f.name != "__init__.py")


def oversized(root: Path = ROOT) -> list[str]:
    """Modules over MAX_MODULE_LINES and functions over MAX_COMPLEXITY."""
    from radon.complexity import cc_visit

    found = []
    for pkg in PROJECT:
        for f in sorted((root / pkg).rglob("*.py")):
            text = f.read_text()
            if (n := len(text.splitlines())) > MAX_MODULE_LINES:
                found.append(f"{f.relative_to(root)}: {n} lines")
            for block in cc_visit(text):
                for item in [block, *getattr(block, "methods", ())]:
                    if item.complexity > MAX_COMPLEXITY:
                        found.append(f"{f.relative_to(root)}: {item.name} has complexity {item.complexity}")
    return found


def test_crm_is_the_bottom_floor() -> None:
    assert not upward_imports(), upward_imports()


def test_pbx_keeps_its_modules_in_rooms() -> None:
    hall = pbx_hall()
    assert "app.py" in hall and len(hall) <= MAX_PBX_MODULES, hall
    rooms = sorted(d.name for d in (ROOT / "pbx").iterdir() if (d / "__init__.py").is_file())
    assert {"asterisk", "ami", "ari", "calls", "robots", "jobs", "outbound", "cli", "workers"} <= set(rooms), rooms


def test_no_module_too_long_and_no_function_too_complex() -> None:
    assert not oversized(), oversized()


def test_the_floor_and_size_checkers_see_violations(tmp_path: Path) -> None:
    for pkg in (*PROJECT, "crm/rules"):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "crm" / "rules" / "x.py").write_text("from pbx.robots import flow\n")
    (tmp_path / "crm" / "y.py").write_text("import web.app\n")
    for i in range(MAX_PBX_MODULES + 1):
        (tmp_path / "pbx" / f"m{i}.py").write_text("\n" * (MAX_MODULE_LINES + 1 if i == 0 else 1))
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(MAX_COMPLEXITY + 1))
    (tmp_path / "web" / "page.py").write_text(f"def tangled(x):\n{branches}    return -1\n")
    assert sorted(upward_imports(tmp_path)) == ["crm/rules/x.py: imports pbx.robots",
                                                "crm/rules/x.py: imports pbx.robots.flow", "crm/y.py: imports web.app"]
    assert len(pbx_hall(tmp_path)) == MAX_PBX_MODULES + 1
    assert oversized(tmp_path) == [f"pbx/m0.py: {MAX_MODULE_LINES + 1} lines", f"web/page.py: tangled has complexity {MAX_COMPLEXITY + 2}"]

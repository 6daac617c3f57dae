"""The pure core imports no I/O: no asyncio, sockets, HTTP, SQL, or clock-reading modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PURE = [ROOT / "pbx" / "calls", ROOT / "pbx" / "robots", ROOT / "pbx" / "ami" / "framing.py"]
FORBIDDEN = {
    "asyncio", "socket", "selectors", "threading", "subprocess", "time",
    "panoramisk", "aiohttp", "aiosqlite", "sqlite3", "requests", "urllib",
    "pbx.ami.client", "pbx.ari", "pbx.embedded", "crm.db", "web", "agi",
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def pure_files() -> list[Path]:
    files: list[Path] = []
    for p in PURE:
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return files


def test_pure_modules_import_no_io() -> None:
    files = pure_files()
    assert any(f.name == "framing.py" for f in files)
    bad = {
        f"{f.relative_to(ROOT)}: {name}"
        for f in files
        for name in imports_of(f)
        if any(name == x or name.startswith(x + ".") for x in FORBIDDEN)
    }
    assert not bad, bad


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import asyncio\nfrom aiohttp import web\nfrom datetime import date\n")
    assert imports_of(sample) == {"asyncio", "aiohttp", "datetime"}

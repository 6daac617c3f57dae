"""``clinic-pbx import FILE --kind patients|doctors|appointments [--mapping M] [--dry-run]``:
the panel's «Настройки → Импорт» from a shell (issue #33). The mapping is guessed from the
file's headers and the clinic's remembered choices; ``--mapping`` gives a JSON object
``{"header": "field"}`` that overrides them. The server may be running: the import writes in
short batches like the panel's."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pbx.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("import", help="import patients, doctors or appointments from the clinic's MIS (CSV or XLSX)")
    p.add_argument("file", type=Path)
    p.add_argument("--kind", required=True, choices=("patients", "doctors", "appointments"))
    p.add_argument("--mapping", type=Path, help='JSON {"column header": "field"} over the guessed mapping')
    p.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
    p.add_argument("--rejections", type=Path, help="write the refused rows (line, column, reason) to this CSV")


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from crm import import_files, mis_import
    from crm.rules import mis_fields
    from crm.storage import database
    from pbx.jobs.mis_import import import_file

    try:
        info, _ = import_files.preview(args.file)
        given = json.loads(args.mapping.read_text(encoding="utf-8")) if args.mapping else {}
    except (import_files.ImportFileError, OSError, ValueError) as exc:
        print(f"import: {exc}", file=sys.stderr)
        return 1
    if not isinstance(given, dict):
        print("import: --mapping must be a JSON object {\"header\": \"field\"}", file=sys.stderr)
        return 1

    async def run() -> int:
        db = database(settings.db_location)
        await db.open()
        try:
            remembered = await mis_import.remembered_mapping(db, args.kind) | {str(k): str(v) for k, v in given.items()}
            mapping = mis_fields.guess_mapping(args.kind, info.headers, remembered)
            for header, field in zip(info.headers, mapping, strict=False):
                print(f"  {header or '(без заголовка)'} -> {field or '-'}")
            problems = mis_fields.mapping_problems(args.kind, mapping)
            if problems:
                print("import: " + "; ".join(problems), file=sys.stderr)
                return 1
            if not args.dry_run:
                await mis_import.remember_mapping(db, args.kind, mis_fields.remembered_from(info.headers, mapping))
            today = datetime.now(ZoneInfo(settings.time_zone)).date()
            result = await import_file(db, args.file, args.kind, today=today, time_zone=settings.time_zone,
                                       mapping=mapping, dry_run=args.dry_run)
            refused = await mis_import.rejections(db, result["id"])
            for line, column, reason in refused[:20]:
                print(f"  строка {line}: {column + ': ' if column else ''}{reason}")
            if len(refused) > 20:
                print(f"  ... ещё {result['rejected'] - 20}" + ("" if args.rejections else " (--rejections FILE: все)"))
            if args.rejections:
                args.rejections.write_text(import_files.rejections_csv(refused), encoding="utf-8")
            print(f"import {result['state']}: {result['message']}")
            return 0 if result["state"] == "done" else 1
        finally:
            await db.close()

    return asyncio.run(run())

"""Issue #33 against the real Asterisk: patients imported from a MIS export (CSV in Windows-1251
with ``;``, the mother and her child sharing one mobile) are known to a real SIPp call on day
one: the desk phone shows the name the import wrote, the call record names the patients, and
the shared number is the guardian case of seed 001; the record agrees with Asterisk's CDR."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from crm import import_files, mis_import
from crm.demo_export import PATIENT_HEADERS, write_csv
from crm.rules import mis_fields
from pbx.jobs.mis_import import run_import
from pbx.outbound.sipp import NEVER
from tests.integration.test_call_scenarios import RINGALL, incoming

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]

ROWS = [
    ["M-1", "Сомова", "Ирина", "Петровна", "12.03.1985", "Ж", "8 (916) 333-44-55", "", "", "", ""],
    ["C-1", "Сомов", "Гриша", "Андреевич", "2019-05-01", "М", "8 (916) 333-44-55", "", "", "", "M-1"],
    ["P-7", "Ёлкин", "Пётр", "", "01/02/1970", "м", "+7 903 777-88-99", "", "", "", ""],
]


async def _import(db, path: Path) -> None:
    info, _ = import_files.preview(path)
    mapping = mis_fields.guess_mapping("patients", info.headers)
    run_id = await mis_import.create_run(db, "patients", path.name, str(path), info.headers, mapping,
                                         info.rows_estimate, None)
    await mis_import.start_run(db, run_id, mapping, False)
    await run_import(db, run_id, today=date(2026, 12, 7), time_zone="Europe/Moscow")
    run = await mis_import.get_run(db, run_id)
    assert run is not None and run["state"] == "done" and run["inserted"] == 3, run


async def test_an_imported_patient_is_named_on_the_desk_phone(server, tmp_path: Path) -> None:
    services, log = server
    await _import(services.db, write_csv(tmp_path / "patients.csv", PATIENT_HEADERS, iter(ROWS)))

    record = await incoming(server, tmp_path, "imported_patient", RINGALL,
                            {"101": {"ring_ms": 800}, "102": {"ring_ms": NEVER}, "103": {"ring_ms": NEVER}},
                            caller="+79037778899")
    assert record["caller_kind"] == "patient" and record["answered_by_ext"] == "101"
    assert [p["full_name"] for p in record["patients"]] == ["Ёлкин Пётр"]
    join = next(e for e in log.events if e.name == "QueueCallerJoin" and e.headers["Linkedid"] == record["linkedid"])
    assert join.headers["CallerIDName"] == "Ёлкин Пётр"  # what the desk phone shows

    shared = await incoming(server, tmp_path, "imported_guardian", RINGALL,
                            {"101": {"ring_ms": 800}, "102": {"ring_ms": NEVER}, "103": {"ring_ms": NEVER}},
                            caller="+79163334455")
    # the mother's own card and her son's, whom she represents: the seed's shared-number case
    assert sorted(p["full_name"] for p in shared["patients"]) == ["Сомов Гриша Андреевич", "Сомова Ирина Петровна"]

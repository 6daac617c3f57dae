"""Issue #33 against the real Asterisk: patients imported from a MIS export (CSV in Windows-1251
with ``;``, the mother and her child sharing one mobile) are known to a real SIPp call on day
one: the desk phone shows the name the import wrote, the call record names the patients, and
the shared number is the guardian case of seed 001; the record agrees with Asterisk's CDR. An
imported schedule is called by the confirmation robot (ARI into patient-sim numbers that press
1 or 3), and the patients' answers land on the imported appointments."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from crm import escort, schedule
from crm.clock import SettableClock
from crm.demo import DEMO_BRANCH, load_demo
from crm.demo_export import PATIENT_HEADERS, write_csv
from crm.rules.escort import EscortSettings
from pbx.jobs.mis_import import import_file
from pbx.outbound.sipp import NEVER
from tests.integration.test_call_scenarios import RINGALL, incoming
from tests.integration.test_robot import CALL_DAY, _campaign, robot_settings, start_app  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]

ROWS = [
    ["M-1", "Сомова", "Ирина", "Петровна", "12.03.1985", "Ж", "8 (916) 333-44-55", "", "", "", ""],
    ["C-1", "Сомов", "Гриша", "Андреевич", "2019-05-01", "М", "8 (916) 333-44-55", "", "", "", "M-1"],
    ["P-7", "Ёлкин", "Пётр", "", "01/02/1970", "м", "+7 903 777-88-99", "", "", "", ""],
]


async def _import(db, path: Path, kind: str = "patients", today: date = date(2026, 12, 7)) -> None:
    run = await import_file(db, path, kind, today=today, time_zone="Europe/Moscow")
    assert run["state"] == "done" and run["rejected"] == 0, run


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


async def test_the_confirmation_robot_calls_an_imported_schedule(robot_settings, gateway, tmp_path: Path) -> None:  # noqa: F811
    clock = SettableClock(CALL_DAY)  # 24.11, 10:00: the day before the visits
    srv, services = await start_app(robot_settings, clock)
    try:
        db, service = services.db, services.escort
        assert service is not None
        await load_demo(db, now=CALL_DAY, robot_patients=False)  # the clinic: its branch and settings
        day = date(2026, 11, 24)
        await _import(db, write_csv(tmp_path / "doctors.csv", ["Код врача", "ФИО", "Специальность", "Филиал"],
                                    iter([["D-7", "Зубова Ирина Олеговна", "Стоматолог", DEMO_BRANCH]])),
                      "doctors", day)
        await _import(db, write_csv(tmp_path / "patients.csv", PATIENT_HEADERS, iter([
            ["R-1", "Лаптева", "Ольга", "", "01.01.1980", "Ж", "+7 999 000-00-01", "", "", "", ""],
            ["R-3", "Шубин", "Павел", "", "02.02.1975", "М", "8 999 000 00 03", "", "", "", ""]])), "patients", day)
        await _import(db, write_csv(tmp_path / "appointments.csv",
                                    ["Код записи", "Код пациента", "Код врача", "Дата", "Время", "Длительность",
                                     "Статус", "Дата создания"], iter([
                                        ["V-1", "R-1", "D-7", "25.11.2026", "10:00", "30", "Запланирован",
                                         "20.11.2026 12:00"],
                                        ["V-3", "R-3", "D-7", "25.11.2026", "11:00", "30", "Запланирован",
                                         "20.11.2026 12:05"]])), "appointments", day)
        await escort.save_settings(db, EscortSettings(robot_retries=1, retry_minutes=30, max_concurrent_calls=10,
                                                      caller_id="74951110001"))
        await asyncio.wait_for(_campaign(service, clock), 120)
        ids = {str(r[0]): int(r[1]) for r in await db.fetchall("SELECT external_id, id FROM appointments"
                                                               " WHERE external_id IS NOT NULL")}
        outcomes = {ext: [str(r[0]) for r in await db.fetchall(
            "SELECT outcome FROM robot_calls WHERE appointment_id = ? ORDER BY attempt", (aid,))]
            for ext, aid in ids.items()}
        assert outcomes == {"V-1": ["confirmed"], "V-3": ["cancelled"]}, outcomes
        assert (await schedule.get_appointment(db, ids["V-1"]))["status"] == "confirmed"  # type: ignore[index]
        assert (await schedule.get_appointment(db, ids["V-3"]))["status"] == "cancelled"  # type: ignore[index]
    finally:
        await srv.close()

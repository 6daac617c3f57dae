"""Import from a clinic's MIS (issue #33): the mapping guessed from Russian headers, rows read
in three date forms and refused with line, column and reason, a dry run that writes nothing,
an import that a second run leaves unchanged and an updated file updates, representatives,
appointments planned for the confirmation robot, a stop resumed, and bad files refused with
the previous data intact. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm import escort, identify, import_files, mis_import
from crm.db import Database
from crm.demo_export import (
    APPOINTMENT_HEADERS,
    DOCTOR_HEADERS,
    PATIENT_HEADERS,
    appointment_rows,
    doctor_rows,
    patient_rows,
    write_csv,
    write_xlsx,
)
from crm.rules import mis_fields, mis_rows
from crm.rules.mis_rows import Rejection, Row, guardian_cycle, parse_row
from pbx.jobs import mis_import as jobs_mis_import
from pbx.jobs.mis_import import import_file, run_import

TODAY = date(2026, 12, 7)
TZ = "Europe/Moscow"


def test_mapping_is_guessed_from_the_exports_headers() -> None:
    mapping = mis_fields.guess_mapping("patients", PATIENT_HEADERS)
    assert mapping == ["external_id", "last_name", "first_name", "middle_name", "birth_date", "sex", "phone",
                       "phone", "email", "notes", "guardian_external_id"]
    assert mis_fields.mapping_problems("patients", mapping) == []
    appts = mis_fields.guess_mapping("appointments", APPOINTMENT_HEADERS)
    assert appts[:5] == ["external_id", "patient_external_id", "doctor_external_id", "date", "time"]
    assert mis_fields.mapping_problems("appointments", appts) == []
    # the clinic's own choice for a header is remembered over the guess; a lone field never doubles
    assert mis_fields.guess_mapping("patients", ["ID", "ФИО", "Заметка врача", "Код"],
                                    {"Заметка врача": "notes"}) == ["external_id", "full_name", "notes", ""]
    assert "Не выбран столбец для поля «ID в МИС»" in mis_fields.mapping_problems("patients", ["full_name"])
    assert mis_fields.mapping_problems("patients", ["external_id", "last_name"]) == [
        "Нужны столбцы «ФИО одной строкой» или «Фамилия» и «Имя»"]


@pytest.mark.parametrize("text", ["31.12.1980", "1980-12-31", "31/12/1980", "1980-12-31 00:00"])
def test_three_date_forms(text: str) -> None:
    assert mis_rows.parse_date(text) == date(1980, 12, 31)


def test_rows_are_refused_with_line_column_and_reason() -> None:
    mapping = ["external_id", "full_name", "birth_date", "phone", "sex", "email"]
    ok = parse_row("patients", mapping, ["7", "Иванова Мария Петровна", "01.02.1990", "8 916 111-22-33, +7 495 111 22 33",
                                         "ж", ""], 2, TODAY)
    assert isinstance(ok, Row)
    assert ok.values["phones"] == ["+79161112233", "+74951112233"]
    assert (ok.values["last_name"], ok.values["middle_name"], ok.values["sex"]) == ("Иванова", "Петровна", "female")
    bad = parse_row("patients", mapping, ["8", "=HYPERLINK(\"x\")", "31.02.1990", "12", "x", "нет"], 9, TODAY)
    assert isinstance(bad, list)
    assert {(r.line, r.column) for r in bad} == {(9, "ФИО одной строкой"), (9, "Дата рождения"), (9, "Телефон"),
                                                 (9, "Пол"), (9, "E-mail")}
    assert any("формула" in r.reason for r in bad)
    assert parse_row("patients", mapping, ["9", "Иванов Пётр", "01.01.2030", "", "", ""], 3, TODAY) == [
        Rejection(3, "Дата рождения", "дата рождения в будущем или раньше 1900 года")]
    # #32: a number with an extension is refused with the reason, not stored without it
    [ext] = parse_row("patients", mapping, ["10", "Иванов Пётр", "", "8 495 111-22-33 доб. 12", "", ""], 4, TODAY)
    assert ext.column == "Телефон" and "доб. 12" in ext.reason
    appt = parse_row("appointments", ["external_id", "patient_external_id", "doctor_external_id", "starts_at",
                                      "ends_at", "status"], ["A1", "P1", "D1", "2026-12-08T09:30", "10:15", "Подтверждён"],
                     2, TODAY)
    assert isinstance(appt, Row)
    assert (appt.values["starts_at"], appt.values["minutes"], appt.values["status"]) == (
        datetime(2026, 12, 8, 9, 30), 45, "confirmed")


def test_guardian_cycles_are_found() -> None:
    assert guardian_cycle({"B": "A"}, "A", "B")
    assert guardian_cycle({"C": "B", "B": "A"}, "A", "C")
    assert not guardian_cycle({"C": "B"}, "A", "C")


async def _import(db: Database, path: Path, kind: str, *, dry_run: bool = False, batch: int = 1000) -> dict:
    return await import_file(db, path, kind, today=TODAY, time_zone=TZ, dry_run=dry_run, batch=batch)


async def _count(db: Database, table: str) -> int:
    row = await db.fetchone(f"SELECT COUNT(*) FROM {table}")
    return int(row[0]) if row else 0


async def test_patients_dry_run_import_reimport_and_update(crm_db: Database, tmp_path: Path) -> None:
    rows = list(patient_rows(2000))
    rows[4][6] = "12345"  # line 6: an impossible phone
    rows[7][4] = "30.02.1999"  # line 9: no such date
    path = write_csv(tmp_path / "patients.csv", PATIENT_HEADERS, iter(rows))
    dry = await _import(crm_db, path, "patients", dry_run=True, batch=300)
    assert (dry["state"], dry["inserted"], dry["rejected"]) == ("done", 1998, 2)
    assert await _count(crm_db, "patients") == 0  # a dry run writes nothing
    assert [r[:2] for r in await mis_import.rejections(crm_db, dry["id"])] == [(6, "Телефон"), (9, "Дата рождения")]
    assert "Будет добавлено: 1998" in dry["message"]

    run = await _import(crm_db, path, "patients", batch=300)
    assert (run["inserted"], run["updated"], run["unchanged"], run["rejected"]) == (1998, 0, 0, 2)
    assert await _count(crm_db, "patients") == 1998
    # a child shares the representative's mobile: one card each, the number names them both
    who = identify.identify_in(crm_db.query_now, "+79160000009")
    assert who.kind == "guardian" and who.display == "Пациенты: 2"
    assert {c.first_name for c in who.candidates} == {rows[8][2], rows[9][2]}

    again = await _import(crm_db, path, "patients", batch=300)
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 1998)
    assert await _count(crm_db, "patients") == 1998 and await _count(crm_db, "guardianships") == 200

    rows[0][1] = "Новикова-Петрова"
    rows[1][6] = "+7 916 999-88-77"
    changed = await _import(crm_db, write_csv(tmp_path / "p2.csv", PATIENT_HEADERS, iter(rows)), "patients")
    assert (changed["inserted"], changed["updated"], changed["unchanged"]) == (0, 2, 1996)
    card = await crm_db.fetchone("SELECT id, last_name FROM patients WHERE external_id = 'P1'")
    assert card is not None and card[1] == "Новикова-Петрова"
    p2 = identify.identify_in(crm_db.query_now, "+79169998877")
    assert p2.kind == "patient"

    # the same patients as XLSX: nothing changes
    xlsx = await _import(crm_db, write_xlsx(tmp_path / "p.xlsx", PATIENT_HEADERS, iter(rows)), "patients")
    assert (xlsx["inserted"], xlsx["updated"], xlsx["unchanged"], xlsx["rejected"]) == (0, 0, 1998, 2)


async def test_a_card_typed_by_hand_is_adopted_not_doubled(crm_db: Database, tmp_path: Path) -> None:
    from crm import patients

    own = await patients.add_patient(crm_db, "Смирнова", "Ольга", phone_numbers=("+79160000001",))
    path = write_csv(tmp_path / "p.csv", ["ID", "ФИО", "Телефон"],
                     iter([["P1", "Смирнова Ольга Ивановна", "8 916 000-00-01"]]))
    run = await _import(crm_db, path, "patients")
    assert (run["inserted"], run["updated"]) == (0, 1)
    row = await crm_db.fetchone("SELECT id, middle_name FROM patients WHERE external_id = 'P1'")
    assert row is not None and (row[0], row[1]) == (own, "Ивановна")


async def test_guardian_cycle_and_unknown_representative(crm_db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", ["ID", "ФИО", "ID представителя"],
                     iter([["A", "Иванова Анна", "B"], ["B", "Иванов Борис", "A"], ["C", "Петров Пётр", "Z"]]))
    run = await _import(crm_db, path, "patients")
    assert run["inserted"] == 3 and run["rejected"] == 2
    assert [(line, reason) for line, _, reason in await mis_import.rejections(crm_db, run["id"])] == [
        (3, "представители образуют цикл"), (4, "нет пациента с ID Z")]
    assert await _count(crm_db, "guardianships") == 1


async def test_doctors_and_appointments_reach_the_confirmation_robot(crm_db: Database, tmp_path: Path) -> None:
    async with crm_db.transaction() as tx:
        await tx.execute("INSERT INTO branches (name, time_zone) VALUES ('Центр', 'Europe/Moscow')")
    await _import(crm_db, write_csv(tmp_path / "p.csv", PATIENT_HEADERS, patient_rows(50)), "patients")
    doctors = list(doctor_rows(3, "Центр")) + [["D9", "Кто-то Неизвестный", "Терапевт", "Нет такого"]]
    d = await _import(crm_db, write_csv(tmp_path / "d.csv", DOCTOR_HEADERS, iter(doctors)), "doctors")
    assert (d["inserted"], d["rejected"]) == (3, 1)
    appts = list(appointment_rows(600, 50, 3, TODAY))
    appts.append(["A999", "P404", "D1", "08.12.2026", "10:00", "30", "Запланирован", ""])
    path = write_xlsx(tmp_path / "a.xlsx", APPOINTMENT_HEADERS, iter(appts))
    marks = "SELECT (SELECT COUNT(*) FROM report_dirty), (SELECT epoch FROM appeal_meta WHERE id = 1)"
    before = tuple(await crm_db.fetchone(marks))  # type: ignore[arg-type]
    a = await _import(crm_db, path, "appointments", batch=128)
    assert (a["inserted"], a["rejected"]) == (600, 1)
    # no booking times, no calls: no stored report or appeal day to redo (migration 0037)
    assert tuple(await crm_db.fetchone(marks)) == before  # type: ignore[arg-type]
    assert (await mis_import.rejections(crm_db, a["id"]))[0][2].startswith("нет пациента с ID P404")
    again = await _import(crm_db, path, "appointments")
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 600)
    row = await crm_db.fetchone("SELECT starts_at, ends_at, status, source, created_ts FROM appointments"
                                " WHERE external_id = 'A1'")
    assert row is not None and tuple(row) == ("2026-10-08T09:00", "2026-10-08T09:30", row[2], "import", 0.0)
    now = datetime(2026, 12, 7, 12, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    made, _ = await escort.plan(crm_db, now, ZoneInfo(TZ))
    future = await crm_db.fetchone("SELECT COUNT(*) FROM appointments WHERE starts_ts > ? AND status IN"
                                   " ('unconfirmed', 'confirmed')", (now,))
    assert future is not None and future[0] > 0
    assert made == 2 * future[0]  # a confirmation and a reminder each; no «details» for an imported one


async def test_a_stopped_import_resumes_after_its_last_batch(crm_db: Database, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_csv(tmp_path / "p.csv", PATIENT_HEADERS, patient_rows(1000))
    info, _ = import_files.preview(path)
    mapping = mis_fields.guess_mapping("patients", info.headers)
    run_id = await mis_import.create_run(crm_db, "patients", "p.csv", str(path), info.headers, mapping, 1000, None)
    await mis_import.start_run(crm_db, run_id, mapping, False)
    real, calls = mis_import.apply_patients, []

    async def stops_at_the_fourth(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 4:
            raise asyncio.CancelledError  # the server stopped mid-import
        return await real(*args, **kwargs)

    monkeypatch.setattr(mis_import, "apply_patients", stops_at_the_fourth)
    # a big file's rows are parsed in a process of their own: that path, stopped and resumed
    pools: list[object] = []

    class CountedPool(jobs_mis_import.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(jobs_mis_import, "PARSER_PROCESS_ROWS", 500)
    monkeypatch.setattr(jobs_mis_import, "ProcessPoolExecutor", CountedPool)
    with pytest.raises(asyncio.CancelledError):
        await run_import(crm_db, run_id, today=TODAY, time_zone=TZ, resume=True, batch=100)
    stopped = await mis_import.get_run(crm_db, run_id)
    assert stopped is not None and (stopped["state"], stopped["rows_done"]) == ("running", 300)
    assert await mis_import.interrupted_runs(crm_db) == [run_id]
    monkeypatch.setattr(mis_import, "apply_patients", real)
    await run_import(crm_db, run_id, today=TODAY, time_zone=TZ, resume=True, batch=100)
    run = await mis_import.get_run(crm_db, run_id)
    assert run is not None and (run["state"], run["inserted"], run["rows_done"]) == ("done", 1000, 1000)
    assert len(pools) == 2
    assert await _count(crm_db, "patients") == 1000 and await _count(crm_db, "guardianships") == 100


async def test_bad_files_are_refused_and_nothing_is_half_written(crm_db: Database, tmp_path: Path) -> None:
    good = await _import(crm_db, write_csv(tmp_path / "p.csv", PATIENT_HEADERS, patient_rows(30)), "patients")
    assert good["inserted"] == 30
    broken = tmp_path / "broken.csv"
    text = "ID;ФИО;Телефон\n" + "".join(f"Q{i};Орлов Олег;8916{i:07d}\n" for i in range(3000))
    broken.write_bytes(text.encode("utf-8") + b"Q9;\xff\xfe\x98 broken;1\n")
    run = await _import(crm_db, broken, "patients", batch=100)
    assert run["state"] == "failed" and "кодировка" in run["message"]
    assert await _count(crm_db, "patients") == 30  # nothing of the broken file, the previous data intact
    for name, content, words in [
        ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "XLS"),
        ("empty.csv", b"", "пустой"),
        ("fake.xlsx", b"PK\x03\x04 not really a zip", "повреждён"),
        ("img.csv", b"\x89PNG\r\n\x1a\n", "не таблица"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(import_files.ImportFileError, match=words):
            import_files.preview(tmp_path / name)
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: 200 MB on paper, nothing on disk
    with pytest.raises(import_files.ImportFileError, match="больше 100 МБ"):
        import_files.preview(huge)


def test_cp1251_and_delimiters_are_detected(tmp_path: Path) -> None:
    for encoding, delimiter in [("cp1251", ";"), ("utf-8", ","), ("utf-8-sig", "\t")]:
        path = write_csv(tmp_path / f"{encoding}.csv", PATIENT_HEADERS, patient_rows(5), encoding, delimiter)
        info, first = import_files.preview(path)
        assert info.headers == PATIENT_HEADERS and info.delimiter == delimiter
        assert first[0][1] in ("Иванов", "Петров", "Сидоров", "Смирнов", "Кузнецов", "Попов", "Соколов",
                               "Лебедев", "Козлов", "Новиков", "Иванова", "Петрова", "Сидорова", "Смирнова",
                               "Кузнецова", "Попова", "Соколова", "Лебедева", "Козлова", "Новикова")
    assert import_files.rejections_csv([(3, "ФИО", "=cmd")]).splitlines()[1] == "3;ФИО;'=cmd"


async def test_the_import_page_upload_dry_run_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel's way: upload, a field per column, a dry run, then the import; the uploaded file
    is deleted once imported; a settings page only for settings admins."""
    import aiohttp

    from crm import users
    from pbx.services import SERVICES
    from tests.unit.panel_client import log_in, settings_admin_panel

    rows = list(patient_rows(300))
    rows[2][6] = "000"
    xlsx = write_xlsx(tmp_path / "выгрузка.xlsx", PATIENT_HEADERS, iter(rows))
    async with settings_admin_panel(tmp_path / "state") as (db, client):
        page = await client.get("/settings/import")
        assert page.status == 200 and "Импорт из медицинской информационной системы" in await page.text()
        token = re.search(r'name="csrf-token" content="([^"]+)"', await page.text()).group(1)  # type: ignore[union-attr]

        def form(path: Path, kind: str = "patients") -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("kind", kind)
            data.add_field("file", path.read_bytes(), filename=path.name)
            return data

        bad = tmp_path / "photo.csv"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n....")
        refused = await client.post("/settings/import", data=form(bad), headers={"X-CSRF-Token": token})
        assert refused.status == 400 and "не таблица" in await refused.text()
        monkeypatch.setattr(import_files, "MAX_BYTES", 1000)
        big = await client.post("/settings/import", data=form(xlsx), headers={"X-CSRF-Token": token})
        assert big.status == 400 and "больше" in await big.text()
        monkeypatch.undo()
        assert list((tmp_path / "state" / "imports").iterdir()) == []  # nothing of the refused files kept

        uploaded = await client.post("/settings/import", data=form(xlsx), headers={"X-CSRF-Token": token})
        assert uploaded.status == 200 and re.search(r"/settings/import/\d+$", str(uploaded.url))
        run_id = int(str(uploaded.url).rsplit("/", 1)[1])
        text = await uploaded.text()
        assert 'name="col_0"' in text and "<option value=\"external_id\" selected>" in text
        mapping = {f"col_{i}": f for i, f in enumerate(mis_fields.guess_mapping("patients", PATIENT_HEADERS))}
        services = client.server.app[SERVICES]
        dry = await client.post(f"/settings/import/{run_id}", data={"csrf_token": token, "action": "dry_run", **mapping})
        assert dry.status == 200
        await services.imports.wait(run_id)
        assert await _count(db, "patients") == 0
        done = await (await client.get(f"/settings/import/{run_id}")).text()
        assert 'data-count="inserted">299<' in done and "невозможный номер телефона: 000" in done
        csv_text = await (await client.get(f"/settings/import/{run_id}/rejected.csv")).text()
        assert csv_text.splitlines()[1].startswith("4;Телефон;")
        status = await (await client.get(f"/settings/import/{run_id}.json")).json()
        assert status["state"] == "done" and status["rejected"] == 1

        await client.post(f"/settings/import/{run_id}", data={"csrf_token": token, "action": "import", **mapping})
        await services.imports.wait(run_id)
        assert await _count(db, "patients") == 299
        assert list((tmp_path / "state" / "imports").iterdir()) == []  # the patients' file is gone
        assert await mis_import.remembered_mapping(db, "patients")  # the next file starts from this mapping

        await users.create_user(db, "admin1", "pw-admin1-123", role="administrator")
        await client.post("/logout", data={"csrf_token": token})
        await log_in(client, "admin1", "pw-admin1-123")
        assert (await client.get("/settings/import")).status == 403

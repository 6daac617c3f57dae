"""The sync API of issue #33: patients and appointments upserted by the MIS's id, one at a time
and in batches, a scoped token, idempotent answers, field-level 422 errors that write nothing,
representatives, a hand-typed card adopted, and the item read back. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import audit, patients, tokens
from pbx.app import SERVICES, build_app
from pbx.settings import AsteriskSettings, Settings, with_generated_secrets


@pytest.fixture
async def client(tmp_path: Path, storage_setting: dict):
    asterisk = AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0)
    app = build_app(with_generated_secrets(Settings(state_dir=tmp_path, asterisk=asterisk, **storage_setting)))
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        db = app[SERVICES].db
        c.db = db  # type: ignore[attr-defined]
        c.sync = {"Authorization": f"Bearer {await tokens.create_token(db, 'mis', ('mis:sync',))}"}  # type: ignore[attr-defined]
        c.reader = {"Authorization": f"Bearer {await tokens.create_token(db, 'reports')}"}  # type: ignore[attr-defined]
        yield c


async def _count(db, table: str) -> int:
    row = await db.fetchone(f"SELECT COUNT(*) FROM {table}")
    return int(row[0])


async def test_a_patient_is_upserted_by_the_mis_id(client: TestClient) -> None:
    db = client.db  # type: ignore[attr-defined]
    body = {"last_name": "Орлова", "first_name": "Вера", "middle_name": "Павловна", "birth_date": "12.03.1985",
            "sex": "ж", "phones": ["8 (916) 555-11-22", "+7 495 111-22-33"], "email": "vera@example.ru"}
    assert (await client.put("/api/v1/patients/P-1", json=body)).status == 401
    assert (await client.put("/api/v1/patients/P-1", json=body, headers=client.reader)).status == 401  # type: ignore[attr-defined]
    created = await client.put("/api/v1/patients/P-1", json=body, headers=client.sync)  # type: ignore[attr-defined]
    assert created.status == 201
    answer = await created.json()
    assert answer["result"] == "created" and answer["id"] > 0
    again = await client.put("/api/v1/patients/P-1", json=body, headers=client.sync)  # type: ignore[attr-defined]
    assert again.status == 200 and (await again.json())["result"] == "unchanged"
    moved = await client.put("/api/v1/patients/P-1", json={"phones": "+79165551122"}, headers=client.sync)  # type: ignore[attr-defined]
    assert (await moved.json())["result"] == "updated"
    read = await (await client.get("/api/v1/patients/P-1", headers=client.sync)).json()  # type: ignore[attr-defined]
    assert (read["last_name"], read["birth_date"], read["sex"], read["phones"], read["email"]) == (
        "Орлова", "1985-03-12", "female", ["+79165551122"], "vera@example.ru")
    assert (await client.get("/api/v1/patients/nope", headers=client.sync)).status == 404  # type: ignore[attr-defined]
    assert await _count(db, "patients") == 1
    trail = [(r["actor"], r["action"]) for r in await audit.entries(db, 0, 4e9)]
    assert trail.count(("API: mis", "api_sync_patients")) == 2  # the two changes; the unchanged PUT left none


async def test_a_refused_item_names_its_fields_and_writes_nothing(client: TestClient) -> None:
    db = client.db  # type: ignore[attr-defined]
    bad = await client.put("/api/v1/patients/P-2", headers=client.sync, json={  # type: ignore[attr-defined]
        "last_name": "Котов", "first_name": "Иван", "birth_date": "31.02.1990", "phones": ["12"], "color": "red",
    })
    assert bad.status == 422
    fields = {e["field"] for e in (await bad.json())["errors"]}
    assert fields == {"color"}  # an unknown field stops the item before its values are read
    bad = await client.put("/api/v1/patients/P-2", headers=client.sync, json={  # type: ignore[attr-defined]
        "last_name": "Котов", "first_name": "Иван", "birth_date": "31.02.1990", "phones": ["12"], "email": "x",
        "notes": "=cmd()"})
    answer = await bad.json()
    assert bad.status == 422 and answer["result"] == "refused" and answer["id"] is None
    assert {e["field"] for e in answer["errors"]} == {"birth_date", "phones", "email", "notes"}
    for hostile in ({"last_name": ["x"]}, {"phones": [{"a": 1}]}, {"price": 1}, {"first_name": True},
                    {"birth_date": 1e400}, [1, 2], "text"):
        r = await client.put("/api/v1/patients/P-3", json=hostile, headers=client.sync)  # type: ignore[attr-defined]
        assert r.status == 422, hostile
    r = await client.put("/api/v1/patients/P-3", data=b"{not json", headers=client.sync)  # type: ignore[attr-defined]
    assert r.status == 400
    r = await client.put("/api/v1/patients/P-3", json={"external_id": "P-4", "last_name": "А", "first_name": "Б"},
                         headers=client.sync)  # type: ignore[attr-defined]
    assert r.status == 422 and (await r.json())["errors"][0]["field"] == "external_id"
    assert await _count(db, "patients") == 0


async def test_batches_representatives_and_a_hand_typed_card(client: TestClient) -> None:
    db = client.db  # type: ignore[attr-defined]
    typed = await patients.add_patient(db, "Лисина", "Ольга", phone_numbers=("+79167770001",))
    items = [
        {"external_id": "M-1", "last_name": "Лисина", "first_name": "Ольга", "phones": ["89167770001"]},
        {"external_id": "C-1", "last_name": "Лисин", "first_name": "Петя", "birth_date": "2019-05-01",
         "phones": ["89167770001"], "guardian_external_id": "M-1"},
        {"external_id": "C-2", "last_name": "Лисин", "first_name": "Миша", "guardian_external_id": "NOBODY"},
        {"external_id": "C-1", "last_name": "Дубль", "first_name": "Дубль"},
    ]
    r = await client.put("/api/v1/patients", json={"items": items}, headers=client.sync)  # type: ignore[attr-defined]
    answer = await r.json()
    assert r.status == 200 and answer["refused"] == 2
    by_id = [(x["external_id"], x["result"]) for x in answer["results"]]
    assert by_id == [("M-1", "updated"), ("C-1", "created"), ("C-2", "refused"), ("C-1", "refused")]
    assert answer["results"][0]["id"] == typed  # the card typed by hand was taken over, not doubled
    assert answer["results"][2]["errors"][0]["field"] == "guardian_external_id"
    child = await (await client.get("/api/v1/patients/C-1", headers=client.sync)).json()  # type: ignore[attr-defined]
    assert child["guardian_external_id"] == "M-1"
    assert await _count(db, "patients") == 2
    # a cycle (the mother made her son's ward) is refused before anything is written
    r = await client.put("/api/v1/patients/M-1", json={"guardian_external_id": "C-1"}, headers=client.sync)  # type: ignore[attr-defined]
    assert r.status == 422 and "цикл" in (await r.json())["errors"][0]["reason"]
    assert (await client.put("/api/v1/patients", json={"items": []}, headers=client.sync)).status == 422  # type: ignore[attr-defined]
    too_many = {"items": [{"external_id": str(i)} for i in range(1001)]}
    assert (await client.put("/api/v1/patients", json=too_many, headers=client.sync)).status == 413  # type: ignore[attr-defined]


async def test_appointments_by_the_mis_ids_of_patient_and_doctor(client: TestClient) -> None:
    db = client.db  # type: ignore[attr-defined]
    await client.put("/api/v1/patients/P-9", json={"last_name": "Рыбин", "first_name": "Олег"}, headers=client.sync)  # type: ignore[attr-defined]
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO doctors (full_name, specialty, external_id) VALUES ('Зубов И. И.', 'стоматолог', 'D-1')")
    body = {"patient_external_id": "P-9", "doctor_external_id": "D-1", "starts_at": "2026-12-20T10:30", "minutes": 45,
            "status": "Подтвержден", "price": "2500,50"}
    r = await client.put("/api/v1/appointments/A-1", json=body, headers=client.sync)  # type: ignore[attr-defined]
    assert r.status == 201, await r.text()
    assert (await (await client.put("/api/v1/appointments/A-1", json=body, headers=client.sync)).json())["result"] == "unchanged"  # type: ignore[attr-defined]
    read = await (await client.get("/api/v1/appointments/A-1", headers=client.sync)).json()  # type: ignore[attr-defined]
    assert (read["starts_at"], read["ends_at"], read["status"], read["price"], read["source"]) == (
        "2026-12-20T10:30", "2026-12-20T11:15", "confirmed", 2500.5, "import")
    # a status alone: the rest of the visit stays as it was
    r = await client.put("/api/v1/appointments/A-1", json={"status": "Пришёл"}, headers=client.sync)  # type: ignore[attr-defined]
    assert r.status == 200 and (await r.json())["result"] == "updated"
    read = await (await client.get("/api/v1/appointments/A-1", headers=client.sync)).json()  # type: ignore[attr-defined]
    assert (read["starts_at"], read["ends_at"], read["status"], read["price"]) == (
        "2026-12-20T10:30", "2026-12-20T11:15", "completed", 2500.5)
    r = await client.put("/api/v1/appointments/A-2", json={"status": "Пришёл"}, headers=client.sync)  # type: ignore[attr-defined]
    assert r.status == 422  # an unknown one needs its patient, doctor and time
    r = await client.put("/api/v1/appointments/A-2", json={**body, "doctor_external_id": "D-404"}, headers=client.sync)  # type: ignore[attr-defined]
    assert r.status == 422 and (await r.json())["errors"][0]["field"] == "doctor_external_id"
    r = await client.put("/api/v1/appointments/A-2", json={**body, "price": "NaN"}, headers=client.sync)  # type: ignore[attr-defined]
    assert r.status == 422 and (await r.json())["errors"][0]["field"] == "price"
    r = await client.put("/api/v1/appointments", headers=client.sync, json={"items": [  # type: ignore[attr-defined]
        {**body, "external_id": "A-1", "status": "Отменен"}, {**body, "external_id": "A-3", "starts_at": "завтра"}]})
    assert [x["result"] for x in (await r.json())["results"]] == ["updated", "refused"]
    assert await _count(db, "appointments") == 1

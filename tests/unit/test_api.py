"""The JSON API: token auth, filters, validation, OpenAPI, against a CRM with real records."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm import calls, patients, tokens
from crm.rules.call_records import CallRecord, LegRecord
from pbx.app import SERVICES, build_app
from pbx.settings import AsteriskSettings, Settings, with_generated_secrets


def record(lid: str, t0: float, caller: str, *, answered: bool) -> CallRecord:
    legs = (LegRecord("101", lid + ".1", "answered" if answered else "no_answer", t0, t0 + 2 if answered else None,
                      t0 + 9, not answered),)
    return CallRecord(lid, "incoming", "incoming" if answered else "missed", "74951110001", caller,
                      "74951110001", "reception-ringall", legs, "101" if answered else "", t0,
                      t0 + 2 if answered else None, t0 + 9, 2.0 if answered else 9.0, 7.0 if answered else 0.0,
                      "caller", f"{lid}.wav" if answered else "")


@pytest.fixture
async def client(tmp_path: Path, storage_setting: dict):
    asterisk = AsteriskSettings(embedded=False, ami_port=1, http_port=1, agi_port=0)
    app = build_app(with_generated_secrets(Settings(state_dir=tmp_path, asterisk=asterisk, **storage_setting)))
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        db = app[SERVICES].db
        await patients.add_patient(db, "Петрова", "Анна", "Сергеевна", phone_numbers=("+79161234567",))
        await calls.save_call(db, record("100.0", 1795300000.0, "79161234567", answered=True))
        await calls.save_call(db, record("200.0", 1795390000.0, "+7 903 111-22-33", answered=False))
        c.token = await tokens.create_token(db, "reports")  # type: ignore[attr-defined]
        yield c


def auth(c) -> dict[str, str]:
    return {"Authorization": f"Bearer {c.token}"}


async def test_token_required(client) -> None:
    assert (await client.get("/api/v1/calls")).status == 401
    assert (await client.get("/api/v1/calls", headers={"Authorization": "Bearer cpbx_nope"})).status == 401
    assert (await client.get("/api/v1/calls", headers=auth(client))).status == 200


async def test_filters(client) -> None:
    h = auth(client)
    body = await (await client.get("/api/v1/calls", headers=h)).json()
    assert [c["linkedid"] for c in body["calls"]] == ["200.0", "100.0"]
    missed = await (await client.get("/api/v1/calls?type=missed", headers=h)).json()
    assert [c["linkedid"] for c in missed["calls"]] == ["200.0"]
    assert missed["calls"][0]["missed_by"] == ["101"]
    by_name = await (await client.get("/api/v1/calls", params={"q": "Петрова"}, headers=h)).json()
    assert [c["linkedid"] for c in by_name["calls"]] == ["100.0"]
    by_phone = await (await client.get("/api/v1/calls?q=1112233", headers=h)).json()
    assert [c["phone_e164"] for c in by_phone["calls"]] == ["+79031112233"]
    period = await (await client.get("/api/v1/calls?since=2026-11-21&until=2026-11-21", headers=h)).json()
    assert [c["linkedid"] for c in period["calls"]] == ["100.0"]
    one = await (await client.get(f"/api/v1/calls/{by_name['calls'][0]['id']}", headers=h)).json()
    assert one["patients"][0]["full_name"] == "Петрова Анна Сергеевна"
    assert (await client.get("/api/v1/calls/999999", headers=h)).status == 404


@pytest.mark.parametrize("query", ["type=lost", "since=yesterday", "limit=0", "limit=abc", "employee=x"])
async def test_bad_filters_are_400(client, query: str) -> None:
    resp = await client.get(f"/api/v1/calls?{query}", headers=auth(client))
    assert resp.status == 400 and "error" in await resp.json()


async def test_openapi_document(client) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/api/v1/calls" in doc["paths"]
    props = set(doc["components"]["schemas"]["Call"]["properties"])
    body = await (await client.get("/api/v1/calls", headers=auth(client))).json()
    assert set(body["calls"][0]) == props  # the document describes what is really returned


async def test_a_cursor_pages_through_every_call_once(client) -> None:
    """limit stays a page size; the cursor fetches what follows, even while calls are saved."""
    h = auth(client)
    db = client.server.app[SERVICES].db
    for i in range(5):
        await calls.save_call(db, record(f"{300 + i}.0", 1795400000.0 + i * 60, "79161234567", answered=True))
    seen: list[str] = []
    page = await (await client.get("/api/v1/calls?limit=3", headers=h)).json()
    assert page["more"] is True and page["limit"] == 3 and len(page["calls"]) == 3
    seen += [c["linkedid"] for c in page["calls"]]
    # a newer call arrives between pages: it does not push a call into the next page twice
    await calls.save_call(db, record("900.0", 1795500000.0, "79161234567", answered=True))
    while page["more"]:
        page = await (await client.get("/api/v1/calls", params={"limit": "3", "cursor": page["next_cursor"]},
                                       headers=h)).json()
        seen += [c["linkedid"] for c in page["calls"]]
    assert seen == ["304.0", "303.0", "302.0", "301.0", "300.0", "200.0", "100.0"]
    assert page["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["nope", "", "!!!", "MjAyNi0xMS0yMHw", "eHx5", "MjAyNi0xMS0yMFQxMDowMDowMHwtNQ"])
async def test_a_forged_cursor_is_400(client, cursor: str) -> None:
    resp = await client.get("/api/v1/calls", params={"cursor": cursor or "=", "offset": "0"}, headers=auth(client))
    assert resp.status == 400 and "cursor" in (await resp.json())["error"]


async def test_cursor_and_offset_together_are_400(client) -> None:
    page = await (await client.get("/api/v1/calls?limit=1", headers=auth(client))).json()
    resp = await client.get("/api/v1/calls", params={"cursor": page["next_cursor"], "offset": "1"},
                            headers=auth(client))
    assert resp.status == 400

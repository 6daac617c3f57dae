"""Call tracking against the real Asterisk: each scenario is placed with SIPp, recorded by the
tracker into the CRM, and compared with Asterisk's own CDR for the same linkedid."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crm import patients
from crm.call_listing import CallFilter, list_calls
from pbx.outbound.originate import OriginateRequest, originate
from pbx.outbound.sipp import NEVER, start_operator_call, start_operator_uas
from tests.integration.helpers import (
    assert_matches_cdr,
    keep_fixture,
    start_phones,
    stop_all,
    wait_call,
    wait_cdr,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
RINGALL, LINEAR = "74951110001", "74951110002"
ANNA = "+79161234567"


async def linkedid_of(log, caller_digits: str) -> str:
    ev = await log.wait_for(
        lambda e: e.name == "Newchannel" and e.headers.get("CallerIDNum") == caller_digits
        and e.headers["Channel"].startswith("PJSIP/operator")
    )
    return ev.headers["Linkedid"]


async def incoming(server, tmp_path: Path, name: str, did: str, phones: dict, *, caller: str = ANNA,
                   talk_ms: int = 2000, cancel_after_ms: int | None = None) -> dict:
    services, log = server
    procs = await start_phones(services, tmp_path, phones)
    call = await start_operator_call(services.settings, caller, did, tmp_path, talk_ms=talk_ms,
                                     cancel_after_ms=cancel_after_ms)
    try:
        linkedid = await linkedid_of(log, caller.lstrip("+"))
    except TimeoutError:
        raise AssertionError(f"the call never reached Asterisk: {call.errors}") from None
    assert await call.wait(60) == 0, call.errors
    await stop_all(*procs.values())
    record = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=max(1, len(record["legs"])))
    assert_matches_cdr(record, rows)
    keep_fixture(tmp_path, name)
    return record


def outcomes(record: dict) -> dict[str, str]:
    return {leg["extension"]: leg["outcome"] for leg in record["legs"]}


async def test_ringall_answered(server, tmp_path: Path) -> None:
    services, _ = server
    await patients.add_patient(services.db, "Петрова", "Анна", "Сергеевна", phone_numbers=(ANNA,))
    r = await incoming(server, tmp_path, "ringall_answered", RINGALL,
                       {"101": {"ring_ms": 1000}, "102": {"ring_ms": NEVER}, "103": {"ring_ms": NEVER}})
    assert r["call_type"] == "incoming" and r["answered_by_ext"] == "101"
    assert outcomes(r) == {"101": "answered", "102": "answered_elsewhere", "103": "answered_elsewhere"}
    assert r["missed_by"] == [] and r["hangup_by"] == "caller"
    assert r["caller_kind"] == "patient" and r["patients"][0]["full_name"] == "Петрова Анна Сергеевна"
    assert r["phone_e164"] == ANNA and r["did"] == RINGALL and r["queue"] == "reception-ringall"
    assert r["recording"].endswith(".wav")


async def test_linear_second_phone_answers(server, tmp_path: Path) -> None:
    r = await incoming(server, tmp_path, "linear_second_answers", LINEAR,
                       {"101": {"ring_ms": NEVER}, "102": {"ring_ms": 1000}, "103": {"ring_ms": NEVER}})
    assert r["call_type"] == "incoming" and r["answered_by_ext"] == "102"
    assert outcomes(r) == {"101": "no_answer", "102": "answered"}
    assert r["missed_by"] == []  # the first phone did not miss it: a colleague took it
    assert r["wait_seconds"] > 4


async def test_caller_abandons_in_linear_queue(server, tmp_path: Path) -> None:
    r = await incoming(server, tmp_path, "linear_abandoned", LINEAR,
                       {"101": {"ring_ms": NEVER}, "102": {"ring_ms": NEVER}, "103": {"ring_ms": NEVER}},
                       cancel_after_ms=6500)
    assert r["call_type"] == "missed" and r["answered_at"] is None
    assert outcomes(r) == {"101": "no_answer", "102": "no_answer"}
    assert r["missed_by"] == ["101", "102"]  # the whole chain that rang
    assert r["hangup_by"] == "caller" and r["recording"] == ""


async def test_caller_hangs_up_while_ringing(server, tmp_path: Path) -> None:
    r = await incoming(server, tmp_path, "ringall_caller_gave_up", RINGALL,
                       {"101": {"ring_ms": NEVER}, "102": {"ring_ms": NEVER}, "103": {"ring_ms": NEVER}},
                       cancel_after_ms=1500)
    assert r["call_type"] == "missed"
    assert sorted(r["missed_by"]) == ["101", "102", "103"]
    assert 1.0 < r["wait_seconds"] < 4.0


async def test_nobody_answers_until_the_queue_gives_up(server, tmp_path: Path) -> None:
    r = await incoming(server, tmp_path, "linear_timeout", LINEAR,
                       {"101": {"ring_ms": NEVER}, "102": {"ring_ms": NEVER}, "103": {"ring_ms": NEVER}})
    assert r["call_type"] == "missed"
    assert r["missed_by"][:2] == ["101", "102"] and set(r["missed_by"]) <= {"101", "102", "103"}
    assert r["hangup_by"] != "caller"
    assert r["wait_seconds"] >= services_wait(server) - 1


def services_wait(server) -> int:
    return server[0].settings.asterisk.queue_max_wait


async def test_busy_phone(server, tmp_path: Path) -> None:
    r = await incoming(server, tmp_path, "ringall_busy_phone", RINGALL,
                       {"101": {"behaviour": "busy"}, "102": {"ring_ms": 1500}, "103": {"ring_ms": NEVER}})
    assert r["answered_by_ext"] == "102"
    assert outcomes(r)["101"] == "busy"
    assert outcomes(r)["103"] == "answered_elsewhere"


async def click_to_call(server, tmp_path: Path, name: str, patient: dict) -> dict:
    services, log = server
    procs = await start_phones(services, tmp_path, {"101": {"ring_ms": 500}}, others=False)
    far = await start_operator_uas(services.settings, tmp_path, **patient)
    assert services.ami is not None
    linkedid = await originate(services.ami, OriginateRequest("101", "79031112233", user_id=None))
    assert linkedid
    await stop_all(far, *procs.values(), wait=20)
    record = await wait_call(services, linkedid)
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid)
    assert_matches_cdr(record, rows)
    keep_fixture(tmp_path, name)
    return record


async def test_outgoing_answered(server, tmp_path: Path) -> None:
    r = await click_to_call(server, tmp_path, "outgoing_answered", {"ring_ms": 1000, "hangup_ms": 2500})
    assert r["direction"] == "outgoing" and r["call_type"] == "outgoing"
    assert r["answered_by_ext"] == "101" and r["phone_e164"] == "+79031112233"
    assert 1.5 <= r["talk_seconds"] <= 3.5 and r["hangup_by"] == "callee"
    # seed 000: the clinic-number filter counts outgoing calls on the line they leave by
    line = server[0].settings.asterisk.outbound_line
    assert r["did"] == line
    rows = await wait_cdr(server[0].settings.cdr_db_path, r["linkedid"])
    assert {row["clinic_did"] for row in rows} == {line}
    on_line = await list_calls(server[0].db, CallFilter(did=line, call_type="outgoing"))
    assert r["linkedid"] in {c["linkedid"] for c in on_line}


async def test_outgoing_unanswered(server, tmp_path: Path) -> None:
    r = await click_to_call(server, tmp_path, "outgoing_busy", {"behaviour": "busy"})
    assert r["call_type"] == "outgoing_unanswered" and r["talk_seconds"] == 0
    assert outcomes(r) == {"operator": "busy"}


async def test_click_to_call_whose_own_phone_does_not_answer(server, tmp_path: Path) -> None:
    """The administrator's desk phone never answered, so the patient was never dialled: not the
    administrator's «Исходящий без ответа» to the patient, and out of the statistics."""
    from pbx.outbound.originate import OriginateError

    services, _ = server
    procs = await start_phones(services, tmp_path, {})  # every phone rings, nobody answers
    assert services.ami is not None
    with pytest.raises(OriginateError):
        await originate(services.ami, OriginateRequest("101", "79031112244", ring_seconds=2))
    await stop_all(*procs.values(), wait=20)
    rows = []
    for _ in range(75):
        await services.calls.flush()
        rows = [c for c in await list_calls(services.db, CallFilter(limit=50)) if c["phone_e164"] == "+79031112244"]
        if rows:
            break
        await asyncio.sleep(0.2)
    assert len(rows) == 1, rows
    r = rows[0]
    assert r["call_type"] == "outgoing_not_connected" and not r["counts_for_stats"]
    assert r["talk_seconds"] == 0 and r["answered_by_ext"] == "101"
    cdr = await wait_cdr(services.settings.cdr_db_path, r["linkedid"])
    assert not [row for row in cdr if row["dstchannel"].startswith("PJSIP/operator")], cdr


async def test_two_simultaneous_calls(server, tmp_path: Path) -> None:
    services, log = server
    phones = await start_phones(services, tmp_path, {
        "101": {"ring_ms": 1000, "calls": 2}, "102": {"ring_ms": 1500, "calls": 2},
        "103": {"ring_ms": NEVER, "calls": 2},
    })
    first = await start_operator_call(services.settings, ANNA, RINGALL, tmp_path, talk_ms=4000, name="op1")
    await asyncio.sleep(0.3)
    second = await start_operator_call(services.settings, "+79031112233", RINGALL, tmp_path,
                                       talk_ms=4000, name="op2")
    ids = [await linkedid_of(log, "79161234567"), await linkedid_of(log, "79031112233")]
    assert await first.wait(60) == 0 and await second.wait(60) == 0
    for p in phones.values():
        await p.wait(3)
    records = [await wait_call(services, lid) for lid in ids]
    for lid, rec in zip(ids, records, strict=True):
        assert_matches_cdr(rec, await wait_cdr(services.settings.cdr_db_path, lid, count=2))
    assert [r["phone_e164"] for r in records] == [ANNA, "+79031112233"]
    assert all(r["call_type"] == "incoming" for r in records)
    assert {r["answered_by_ext"] for r in records} == {"101", "102"}
    keep_fixture(tmp_path, "two_simultaneous")


async def guardian_setup(db) -> None:
    kid1 = await patients.add_patient(db, "Смирнова", "Мария", "Олеговна", birth_date="2015-06-30")
    kid2 = await patients.add_patient(db, "Смирнов", "Олег", "Петрович", birth_date="2018-01-21")
    async with db.transaction() as tx:
        cur = await tx.execute("INSERT INTO guardians (full_name) VALUES ('Смирнова Елена Ивановна')")
        gid = cur.lastrowid
        for kid in (kid1, kid2):
            await tx.execute("INSERT INTO guardianships (guardian_id, patient_id) VALUES (?, ?)", (gid, kid))
        await tx.execute("INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES (?, 'guardian', ?)",
                         ("+79265554433", gid))


async def test_guardian_number(server, tmp_path: Path) -> None:
    services, _ = server
    await guardian_setup(services.db)
    r = await incoming(server, tmp_path, "guardian_calls", RINGALL, {"101": {"ring_ms": 800}},
                       caller="+79265554433")
    assert r["caller_kind"] == "guardian" and r["patient_id"] is None
    assert [p["full_name"] for p in r["patients"]] == ["Смирнова Мария Олеговна", "Смирнов Олег Петрович"]
    assert r["counts_for_stats"] is True


async def test_unknown_number(server, tmp_path: Path) -> None:
    r = await incoming(server, tmp_path, "unknown_caller", RINGALL, {"101": {"ring_ms": 800}},
                       caller="+79990001122")
    assert r["caller_kind"] == "unknown" and r["patients"] == [] and r["phone_e164"] == "+79990001122"


async def test_employee_calling_in(server, tmp_path: Path) -> None:
    services, _ = server
    async with services.db.transaction() as tx:
        cur = await tx.execute("INSERT INTO employees (full_name, position) VALUES ('Кузнецова Ольга Викторовна', 'врач')")
        await tx.execute("INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES ('+79057778899', 'employee', ?)",
                         (cur.lastrowid,))
    r = await incoming(server, tmp_path, "employee_calls", RINGALL, {"101": {"ring_ms": 800}},
                       caller="+79057778899")
    assert r["caller_kind"] == "employee" and r["counts_for_stats"] is False
    assert "Сотрудник: Кузнецова О. В." in (tmp_path / "phone101.msg").read_text()


async def test_leg_attributed_to_the_bound_employee(server, tmp_path: Path) -> None:
    services, _ = server
    from crm import shifts, users

    anna = await users.create_user(services.db, "anna", "x", full_name="Анна")
    await shifts.bind(services.db, anna, "101", services.db.stamp())
    r = await incoming(server, tmp_path, "bound_answer", RINGALL,
                       {"101": {"ring_ms": 800}, "102": {"ring_ms": NEVER}, "103": {"ring_ms": NEVER}})
    assert r["answered_by_user"] == anna
    assert {leg["extension"]: leg["user_id"] for leg in r["legs"]}["101"] == anna

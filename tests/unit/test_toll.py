"""#30, toll fraud: where an outgoing call may go and how many a phone and the box may make.
Premium numbers (8-809, +44 9…) and anything abroad are refused by default, a country the
clinic allows is not, 112 always goes; a phone's 21st call within the hour and the box's 11th
call at once are refused; a refusal is audited and mailed once an hour; the website webhook is
held to the same rules and to a share per source; the callback robot never dials a refused
number; the panel keeps the limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm import callbacks, toll
from crm.rules import callback as cr
from crm.rules import toll as rules
from pbx.app import SERVICES
from tests.unit.test_callback_requests import NOW, REQ, env, signed  # noqa: F401 - the fixture

DEFAULT = rules.TollPolicy()


@pytest.mark.parametrize(("number", "kind", "refused"), [
    ("+79161234567", "mobile", ""), ("89161234567", "mobile", ""), ("84951234567", "landline", ""),
    ("88001234567", "toll_free", ""), ("88091234567", "premium", "платный номер"),
    ("+449001234567", "premium", "платный номер"), ("+88212345678", "invalid", "номер не существует"),
    ("+375291234567", "mobile", "международный звонок (BY)"), ("810375291234567", "mobile", "международный звонок (BY)"),
    ("112", "emergency", ""), ("0611", "invalid", ""),  # a provider's service code: its own business
])
def test_where_a_call_may_go(number: str, kind: str, refused: str) -> None:
    dest = rules.destination(number)
    assert dest.kind == kind
    assert rules.refusal(dest, DEFAULT).startswith(refused) if refused else rules.refusal(dest, DEFAULT) == ""


def test_a_country_the_clinic_allows_and_kinds_it_forbids() -> None:
    policy = rules.policy_from({"toll_countries": "by, kz, x1", "toll_kinds": "landline,premium"})
    assert policy.countries == {"BY", "KZ"} and policy.kinds == {"landline"}  # premium is never a choice
    assert rules.refusal(rules.destination("+375291234567"), policy) == ""
    assert rules.refusal(rules.destination("+79161234567"), policy).startswith("запрещены: мобильные")
    assert rules.refusal(rules.destination("112"), rules.TollPolicy(kinds=frozenset())) == ""


def test_a_phones_hourly_cap_and_the_boxs_calls_at_once() -> None:
    counter, policy = rules.CallCounter(), rules.TollPolicy(per_phone_hour=20, simultaneous=10)
    for i in range(20):
        assert rules.verdict("+79161234567", "104", policy, counter, 1000.0 + i) == ""
    assert "20 исходящих звонков за час" in rules.verdict("+79161234567", "104", policy, counter, 1100.0)
    assert rules.verdict("+79161234567", "105", policy, counter, 1100.0) == ""  # another phone
    assert rules.verdict("112", "104", policy, counter, 1100.0) == ""  # emergency: no cap
    assert rules.verdict("+79161234567", "104", policy, counter, 1000.0 + 3601) == ""  # an hour later
    assert "одновременно" in rules.verdict("+79161234567", "", policy, counter, 5000.0, concurrent=11)
    assert rules.verdict("+79161234567", "", policy, counter, 5000.0, concurrent=10) == ""


def test_the_webhooks_share_and_numbers() -> None:
    assert rules.webhook_refusal("+79161234567", 0, 0, DEFAULT) == ""
    assert "a minute" in rules.webhook_refusal("+79161234567", 10, 10, DEFAULT)
    assert "a day" in rules.webhook_refusal("+79161234567", 0, 300, DEFAULT)
    assert "not allowed" in rules.webhook_refusal("+88212345678", 0, 0, DEFAULT)


async def test_a_refusal_is_audited_and_mailed_once_an_hour(env) -> None:  # noqa: F811
    app, _, _ = env
    db = app[SERVICES].db
    await toll.save_policy(db, {"toll_kinds": "mobile,landline"}, ("director@clinic.ru",), NOW, actor="boss", user_id=None)
    assert await toll.check(db, "88001234567", "104", NOW) == "запрещены: бесплатные (8-800)"
    assert await toll.check(db, "+88212345678", "104", NOW + 60) == "номер не существует"
    assert await toll.check(db, "+79161234567", "104", NOW + 61) == ""
    trips = await toll.recent_trips(db, NOW - 1)
    assert [(t["actor"], t["object_id"]) for t in trips] == [("телефон 104", "+88212345678"), ("телефон 104", "88001234567")]
    letters = await db.fetchall("SELECT to_addrs, body FROM mail_outbox WHERE mail_key LIKE 'toll:%'")
    assert len(letters) == 1 and letters[0][0] == "director@clinic.ru" and "88001234567" in letters[0][1]


async def test_the_webhook_refuses_premium_numbers_and_a_flood(env) -> None:  # noqa: F811
    app, client, _ = env
    r = await client.post("/api/v1/requests", **signed({**REQ, "external_id": "x-1", "phone": "+88212345678"}))
    assert r.status == 422 and "not allowed" in (await r.json())["error"]
    for i in range(10):
        r = await client.post("/api/v1/requests", **signed({**REQ, "external_id": f"f-{i}", "phone": f"+7916123450{i}"}))
        assert r.status == 201, await r.text()
    r = await client.post("/api/v1/requests", **signed({**REQ, "external_id": "f-10", "phone": "+79161234599"}))
    assert r.status == 429
    assert await toll.recent_trips(app[SERVICES].db, NOW - 1) != []


async def test_the_callback_robot_never_dials_a_refused_number(env) -> None:  # noqa: F811
    app, _, _ = env
    db, svc = app[SERVICES].db, app[SERVICES].callbacks
    assert svc is not None
    svc.queue_phones = lambda q: {"101"}
    svc.busy_phones = lambda: set()
    intake = await callbacks.create_request(db, callbacks.NewRequest(phone="+449001234567", source_name="X"), NOW)
    job = (await db.fetchall("SELECT * FROM jobs WHERE job_key = ?", (f"callback:{intake.request_id}",)))[0]
    await svc._job(dict(job) | {"subject_id": intake.request_id}, cr.CallbackSettings(), NOW)
    req = await callbacks.request(db, intake.request_id)
    assert req is not None and (req["state"], req["outcome"]) == ("closed", cr.CLOSED_REFUSED)
    assert svc.held == {}  # nothing was placed


async def test_the_panel_keeps_the_limits(tmp_path: Path) -> None:
    from tests.unit.panel_client import csrf, settings_admin_panel

    async with settings_admin_panel(tmp_path) as (db, client):
        form = {"action": "toll_save", "toll_kinds": ["mobile", "landline"], "toll_countries": "KZ",
                "toll_per_phone_hour": "5", "toll_simultaneous": "3", "security_emails": "a@clinic.ru, b@clinic.ru"}
        data = [(k, v) for k, vs in form.items() for v in (vs if isinstance(vs, list) else [vs])]
        r = await client.post("/settings/telephony", data=[*data, ("csrf_token", await csrf(client, "/settings/telephony"))])
        assert r.status == 200
        policy = await toll.policy(db)
        assert policy == rules.TollPolicy(kinds=frozenset({"mobile", "landline"}), countries=frozenset({"KZ"}),
                                          per_phone_hour=5, simultaneous=3)
        assert await toll.security_emails(db) == ("a@clinic.ru", "b@clinic.ru")
        bad = await client.post("/settings/telephony", data={
            "action": "toll_save", "toll_countries": "Narnia", "csrf_token": await csrf(client, "/settings/telephony")})
        assert bad.status == 400 and "ISO" in await bad.text()
        bad = await client.post("/settings/telephony", data={
            "action": "toll_save", "security_emails": "x@y.ru\nBcc: evil@z.ru", "csrf_token": await csrf(client, "/settings/telephony")})
        assert bad.status == 400

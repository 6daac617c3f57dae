"""CRM basics: phone normalisation, caller identification, shift bindings with history."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from crm import identify, patients, phones, shifts, users
from crm.db import Database


@pytest.mark.parametrize("raw,e164", [
    ("8 (916) 123-45-67", "+79161234567"),
    ("79161234567", "+79161234567"),
    ("+7 916 123 45 67", "+79161234567"),
    ("+44 20 7946 0958", "+442079460958"),
    ("442079460958", "+442079460958"),
    ("", None), ("anonymous", None), ("12", None), ("9" * 60, None), ("<unknown>", None),
])
def test_normalize(raw: str, e164: str | None) -> None:
    assert phones.normalize(raw) == e164


def _by_the_library(raw: str) -> str | None:
    """``normalize`` as it was before its fast path for Russian mobiles: the library alone."""
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not text.startswith("+"):
        if len(digits) == 11 and digits[0] in "78":
            text = "+7" + digits[1:]
        elif len(digits) > 11:
            text = "+" + digits
    try:
        number = phonenumbers.parse(text, "RU")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_FORMS = ["8{}", "+7{}", "7{}", "8 ({}) {}-{}-{}", "+7 {} {}", "({})", "+8{}", "+ 7{}", "7-{}", "8.{}", "+{}",
          "(8){}", "8{}x", "9{}", "+7({}){}", "+7 (8{}) {}", "8{}{}", " +7{} "]


@pytest.mark.parametrize("form", _FORMS)
def test_the_fast_path_for_russian_mobiles_agrees_with_the_library(form: str) -> None:
    rnd = random.Random(form)
    for first in "0123456789":
        for second in "90123456789":
            for _ in range(4):
                digits = first + second + "".join(rnd.choice("0123456789") for _ in range(8))
                if form.count("{}") == 4:
                    raw = form.format(digits[:3], digits[3:6], digits[6:8], digits[8:])
                elif form.count("{}") == 2:
                    raw = form.format(digits[:3], digits[3:])
                else:
                    raw = form.format(digits)
                assert phones.normalize(raw) == _by_the_library(raw), raw


def test_kinds_of_plus_seven_numbers_agree_with_the_library() -> None:
    rnd = random.Random(7)
    for first in "0123456789":
        for _ in range(300):
            e164 = "+7" + first + "".join(rnd.choice("0123456789") for _ in range(9))
            number = phonenumbers.parse(e164, None)
            assert phones._e164_number(e164) == number, e164
            if phonenumbers.region_code_for_number(number) != "RU":
                expected = "foreign"
            elif phonenumbers.number_type(number) in (phonenumbers.PhoneNumberType.MOBILE,
                                                      phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
                expected = "mobile"
            else:
                expected = "landline"
            assert phones.kind(e164) == expected, e164


def test_kinds() -> None:
    assert phones.kind("+79161234567") == "mobile"
    assert phones.kind("+74957654321") == "landline"
    assert phones.kind("+442079460958") == "foreign"


@pytest.fixture
async def db(crm_db: Database):
    return crm_db


async def test_identify_every_kind(db: Database) -> None:
    anna = await patients.add_patient(db, "Петрова", "Анна", "Сергеевна", phone_numbers=("+79161234567",))
    kid = await patients.add_patient(db, "Петров", "Миша", birth_date="2016-01-01")
    async with db.transaction() as tx:
        g = (await tx.execute("INSERT INTO guardians (full_name, patient_id) VALUES ('Петрова Анна Сергеевна', ?)",
                              (anna,))).lastrowid
        await tx.execute("INSERT INTO guardianships (guardian_id, patient_id) VALUES (?, ?)", (g, kid))
        await tx.execute("INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES ('+79161234567', 'guardian', ?)", (g,))
        c = (await tx.execute("INSERT INTO contractors (name) VALUES ('ООО «Зуботехник»')")).lastrowid
        await tx.execute("INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES ('+74950001122', 'contractor', ?)", (c,))
    mother = identify.identify(db, "+79161234567")
    assert mother.kind == "guardian" and mother.display == "Пациенты: 2"
    assert [p.id for p in mother.candidates] == [anna, kid]  # herself and her child
    supplier = identify.identify(db, "+74950001122")
    assert supplier.kind == "contractor" and not supplier.counts_for_stats
    assert supplier.display == "Контрагент: ООО «Зуботехник»"
    assert identify.identify(db, "+79990000000").kind == "unknown"
    assert identify.identify(db, None).kind == "unknown"
    with pytest.raises(ValueError):
        await patients.add_patient(db, "Икс", "Игрек", phone_numbers=("not a phone",))


async def test_shift_binding_moves_a_phone_and_keeps_history(db: Database) -> None:
    anna = await users.create_user(db, "anna", "x")
    olga = await users.create_user(db, "olga", "y")
    assert (await shifts.bind(db, anna, "101", "2026-11-22T08:00:00.000+00:00")).displaced_user is None
    moved = await shifts.bind(db, olga, "101", "2026-11-22T12:00:00.000+00:00")
    assert moved.displaced_user == anna  # Anna is told her phone was taken
    assert await shifts.current_extension(db, anna) is None
    assert await shifts.current_extension(db, olga) == "101"
    assert await shifts.user_at(db, "101", "2026-11-22T09:00:00.000+00:00") == anna
    assert await shifts.user_at(db, "101", "2026-11-22T13:00:00.000+00:00") == olga
    assert await shifts.user_at(db, "101", "2026-11-22T07:00:00.000+00:00") is None
    await shifts.bind(db, olga, None, "2026-11-22T18:00:00.000+00:00")  # "Не работаю с телефонией"
    assert await shifts.user_at(db, "101", "2026-11-22T19:00:00.000+00:00") is None


async def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO contractors (name) VALUES ('half')")
            raise RuntimeError("crash between two rows")
    assert await db.fetchall("SELECT * FROM contractors") == []


async def test_demo_clinic_loads_once_and_identifies(db: Database) -> None:
    from crm import demo

    assert await demo.load_demo(db) == 7
    assert await demo.load_demo(db) == 0
    assert identify.identify(db, "+79265554433").display == "Пациенты: 2"
    assert identify.identify(db, "+79057778899").kind == "employee"
    assert identify.identify(db, "+79161234567").display == "Петрова Анна Сергеевна"
    rows = await db.fetchall("SELECT ad_channel FROM clinic_numbers ORDER BY did")
    assert [r[0] for r in rows] == ["Сайт", "ПроДокторов"]


@pytest.mark.parametrize(("raw", "ext"), [("+7 (999) 000-00-12 доб. 5", "5"), ("8 999 000-00-12 доб 5", "5"),
                                          ("+7 999 000 00 12 ext. 15", "15"), ("+79990000012#5", "5"),
                                          ("+7 999 000-00-12", ""), ("", ""), ("не номер", "")])
def test_a_number_with_an_extension_is_refused_with_the_reason(raw: str, ext: str) -> None:
    """#32: «+7 (999) 000-00-12 доб. 5» was stored as +79990000012 with the extension lost."""
    assert phones.extension(raw) == ext
    if ext:
        assert f"доб. {ext}" in phones.extension_refused(raw)
        with pytest.raises(ValueError, match="прямой номер"):
            phones.refuse_extension(raw)
    else:
        assert phones.extension_refused(raw) == ""


async def test_a_patient_card_refuses_a_number_with_an_extension(tmp_path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        with pytest.raises(ValueError, match="доб. 5"):
            await patients.add_patient(db, "Петрова", "Анна", "", phone_numbers=("+7 999 000-00-12 доб. 5",))
        assert await db.fetchall("SELECT id FROM patients") == []
    finally:
        await db.close()

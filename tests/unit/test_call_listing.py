"""Listing calls is a fixed number of set-based queries whatever the page size (it was 1 + 5
per call), and each call keeps its own details."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm import call_listing, calls, patients, tags
from crm.db import Database, Reader
from crm.rules.call_records import CallRecord, LegRecord

T0 = 1_790_000_000.0


def record(n: int) -> CallRecord:
    lid = f"{T0 + n}.{n}"
    legs = (LegRecord("101", lid + ".1", "answered", T0 + n, T0 + n + 2, T0 + n + 60, False),
            LegRecord("102", lid + ".2", "answered_elsewhere", T0 + n, None, T0 + n + 2, False))
    return CallRecord(lid, "incoming", "incoming", "74951110001", f"7916{n:07d}", "74951110001",
                      "reception", legs, "101", T0 + n, T0 + n + 2, T0 + n + 60, 2.0, 58.0, "caller", "")



async def test_a_fixed_number_of_queries(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(60):
        if n % 2 == 0:
            await patients.add_patient(db, "Пациент", str(n), "", phone_numbers=(f"+7916{n:07d}",))
        await calls.save_call(db, record(n))
    group = await tags.create_group(db, "Итог")
    tag = await tags.add_tag(db, group, "Записан")
    await tags.set_tags(db, record(4).linkedid, [tag], "", None)
    counted: list[str] = []
    hops: list[int] = []
    real = {name: getattr(Reader, name) for name in ("fetch_tuples", "fetch_dicts")}

    def counting(name):
        def statement(self, sql, params=()):
            counted.append(sql)
            return real[name](self, sql, params)
        return statement

    for name in real:
        monkeypatch.setattr(Reader, name, counting(name))
    one_hop = db.read

    async def hop(fn):
        hops.append(1)
        return await one_hop(fn)

    monkeypatch.setattr(db, "read", hop)
    few = await call_listing.list_calls(db, call_listing.CallFilter(limit=5))
    queries_for_5 = len(counted)
    counted.clear()
    many = await call_listing.list_calls(db, call_listing.CallFilter(limit=60))
    assert len(few) == 5 and len(many) == 60
    assert 8 <= len(counted) == queries_for_5 <= 14  # the same statements for 5 calls and for 60
    assert hops == [1, 1]  # each listing is one hop to the reading thread, all its statements in it
    by_lid = {c["linkedid"]: c for c in many}
    four = by_lid[record(4).linkedid]
    assert four["tags"] == ["Записан"] and by_lid[record(6).linkedid]["tags"] == []
    assert [leg["extension"] for leg in four["legs"]] == ["101", "102"]
    assert four["patients"] and four["patients"][0]["full_name"] == "Пациент 4"
    assert by_lid[record(5).linkedid]["patients"] == []


def test_tags_are_grouped_by_their_group() -> None:
    """Seed 000: «If several tags are set on the same call, they are grouped.»"""
    tagged = [("Почему не записался", "Нет свободных окон"), ("Направление", "Имплантация"),
              ("Почему не записался", "Не устроила цена"), ("", "Спросил про рассрочку")]
    assert call_listing.group_tags(tagged) == [
        {"group": "Почему не записался", "tags": ["Нет свободных окон", "Не устроила цена"]},
        {"group": "Направление", "tags": ["Имплантация"]},
        {"group": "", "tags": ["Спросил про рассрочку"]},
    ]


async def test_tag_labels_by_skip_scan_equal_distinct(tmp_path: Path) -> None:
    """The tag filter's list (a skip scan on the label index) is exactly SELECT DISTINCT ... ORDER BY."""
    from crm import directory
    from crm.db import Database

    db = Database(tmp_path / "tags.sqlite")
    await db.open()
    try:
        assert await directory.tag_labels(db) == []
        labels = ["Дорого", "дорого", "Нет окон", "Дорого", "", "A", "Я", "Нет окон", "a b"]
        async with db.transaction() as tx:
            for i, label in enumerate(labels):
                await tx.execute("INSERT INTO call_tags (linkedid, label, created_at) VALUES (?, ?, '')", (f"{i}.1", label))
        plain = [r[0] for r in await db.fetchall("SELECT DISTINCT label FROM call_tags ORDER BY label")]
        assert await directory.tag_labels(db) == plain and len(plain) == 7
    finally:
        await db.close()


async def test_a_read_function_runs_whole_in_one_snapshot(db: Database) -> None:
    """``Database.read``: a function's statements see one state of the database, a write
    committed meanwhile shows in the next read; an error reaches the caller and leaves the
    reading connection usable; a closed database refuses."""
    await calls.save_call(db, record(1))
    seen: list[int] = []

    def twice(r: Reader) -> None:
        seen.append(r.fetch_tuples("SELECT COUNT(*) FROM calls")[0][0])
        # a write from another connection between the function's two statements
        import sqlite3
        other = sqlite3.connect(db.path, isolation_level=None)
        other.execute("UPDATE calls SET talk_seconds = 999")
        other.close()
        seen.append(r.fetch_tuples("SELECT MAX(talk_seconds) FROM calls")[0][0])

    await db.read(twice)
    assert seen == [1, 58.0]  # the second statement still saw the first one's database
    assert (await db.read(lambda r: r.fetch_tuples("SELECT MAX(talk_seconds) FROM calls")[0]))[0] == 999

    def broken(r: Reader) -> None:
        r.fetch_dicts("SELECT no_such_column FROM calls")

    with pytest.raises(Exception, match="no_such_column"):
        await db.read(broken)
    assert (await db.read(lambda r: r.fetch_tuples("SELECT COUNT(*) FROM calls")))[0][0] == 1
    await db.close()
    with pytest.raises(RuntimeError):
        await db.read(lambda r: None)
    await db.open()  # the fixture closes it again

"""#29: outgoing calls per branch, and a chain's box rendering only its branches. A desk phone's
call leaves by its branch's provider showing its branch's clinic number; a call that already
chose its line (the callback robot's) keeps it; a phone of a branch with no choice, a disabled
provider, a call that is no desk phone's: the clinic's outgoing provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm import telephony as store
from crm.db import Database
from crm.rules import telephony as rules
from pbx.asterisk.render import DIALPLAN_FILE, PJSIP_FILE, Context, render_telephony

GOOD = {"name": "Манго", "server": "sip.mango.ru", "login": "clinic1", "password": "Pa55-word"}


def _line_out(text: str) -> str:
    return text.split("[clinic-line-out]")[1].split("\n\n")[0]


def test_a_phone_of_a_branch_calls_out_by_its_provider_with_its_number() -> None:
    main = rules.check_provider({**GOOD, "outgoing": "1"}, 1)
    east = rules.check_provider({**GOOD, "name": "Восток", "dial_format": "8"}, 2)
    off = rules.check_provider({**GOOD, "name": "Выкл", "enabled": "0"}, 3)
    outs = (rules.BranchOut(2, 2, "+7 (343) 111-00-01"), rules.BranchOut(3, 3, ""), rules.BranchOut(4, None, "74951110002"))
    ctx = Context(outs=outs, phone_branches={"101": 1, "104": 2, "105": 3, "106": 4, "107": None})
    text = render_telephony([main, east, off], [], ctx)[DIALPLAN_FILE]
    line_out = _line_out(text)
    assert "exten => 104,1," in line_out
    assert "Set(CLINIC_BRANCH_TRUNK=trunk-2)" in line_out and "Set(CLINIC_LINE=73431110001)" in line_out
    # a call that already chose its line keeps it
    assert '$["${CLINIC_LINE}" = ""]' in line_out
    # the disabled provider is never chosen: branch 3 has nothing else, its phone is not listed
    assert "exten => 105," not in line_out and "trunk-3" not in text
    # only a number: the clinic's provider, the branch's number
    block_106 = line_out.split("exten => 106,")[1].split("exten =>")[0]
    assert "CLINIC_BRANCH_TRUNK" not in block_106 and "CLINIC_LINE=74951110002" in block_106
    assert "exten => 101," not in line_out and "exten => 107," not in line_out
    # the default is the marked provider; each provider formats the number its own way
    assert "${CLINIC_BRANCH_TRUNK}:trunk-1)" in text
    east_out = text.split("[clinic-out-trunk-2]")[1].split("\n\n")[0]
    assert "Set(CLINIC_OUT_NUMBER=8${CLINIC_OUT_NUMBER:1})" in east_out
    # the caller ID reaches a provider whose From carries the login
    assert "send_pai = yes" in render_telephony([east])[PJSIP_FILE]


def test_a_branch_choice_is_checked_against_the_lists() -> None:
    providers = [rules.check_provider(GOOD, 5)]
    out = rules.check_branch_out({"out_provider": "5", "out_line": "8 495 111-00-02"}, 2, providers, ["74951110002"])
    assert out == rules.BranchOut(2, 5, "74951110002")
    assert rules.check_branch_out({}, 2, providers, []) == rules.BranchOut(2, None, "")
    for form, field in (({"out_provider": "6"}, "out_provider"), ({"out_provider": "5\n[x]"}, "out_provider"),
                        ({"out_line": "74950000000"}, "out_line")):
        with pytest.raises(rules.TelephonyError) as exc:
            rules.check_branch_out(form, 2, providers, ["74951110002"])
        assert exc.value.field == field


def test_a_chains_box_renders_its_branches_rows_and_the_shared_ones() -> None:
    rows = [rules.DeskPhone("104", branch=1), rules.DeskPhone("105", branch=2), rules.DeskPhone("106")]
    assert [p.extension for p in rules.on_box(rows, (2,))] == ["105", "106"]
    assert rules.on_box(rows, ()) == rows  # one clinic, one box: everything


async def test_branch_outs_are_stored_with_a_revision_and_an_audit_line(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO branches (id, name) VALUES (1, 'Центр'), (2, 'Восток')")
        before = await store.revision(db)
        provider_id = await store.save_provider(db, rules.check_provider({**GOOD, "branch": "2"}), 100.0)
        assert (await store.all_providers(db))[0].branch == 2
        await store.save_branch_out(db, rules.BranchOut(2, provider_id, "74951110002"), 101.0, actor="integrator")
        assert await store.branch_outs(db) == [rules.BranchOut(2, provider_id, "74951110002")]
        assert await store.revision(db) == before + 2
        with pytest.raises(rules.TelephonyError):
            await store.save_branch_out(db, rules.BranchOut(9, None, ""), 102.0)
        with pytest.raises(rules.TelephonyError):
            await store.save_provider(db, rules.check_provider({**GOOD, "name": "x", "branch": "9"}), 103.0)
        audit = await db.fetchall("SELECT action FROM audit_log WHERE action = 'branch_out_save'")
        assert len(audit) == 1
    finally:
        await db.close()

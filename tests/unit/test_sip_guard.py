"""#30, SIP scanners: failures counted per address from Asterisk's security events; more than
the threshold within the window earns a ban; the box, the clinic's networks and the providers
are never banned; a ban is stored once with a telephony revision and an audit line, rendered as
a PJSIP ACL of plain addresses only, lifted in the panel."""

from __future__ import annotations

from pathlib import Path

from crm import sip_bans
from crm import telephony as store
from crm.db import Database
from crm.rules import sip_guard as guard
from pbx.asterisk.render import PJSIP_FILE, Context, render_telephony


def test_the_source_of_a_security_event() -> None:
    assert guard.source_address("IPV4/UDP/203.0.113.9/5060") == "203.0.113.9"
    assert guard.source_address("IPV6/TCP/2001:db8::1/5060") == "2001:db8::1"
    assert guard.source_address("garbage") == guard.source_address("") == ""


def test_more_than_the_threshold_within_the_window_bans() -> None:
    policy = guard.GuardPolicy(threshold=3, window=60, never=guard.never_banned(["192.168.1.0/24"], ["198.51.100.7", "sip.x.ru"]))
    counter = guard.ScanCounter()
    assert [counter.failure("203.0.113.9", t, policy) for t in (0, 10, 20)] == [False] * 3
    assert counter.failure("203.0.113.9", 30, policy) is True
    slow = guard.ScanCounter()  # spread over more than the window: never
    assert not any(slow.failure("203.0.113.10", t * 40.0, policy) for t in range(10))
    for never in ("127.0.0.1", "192.168.1.50", "198.51.100.7"):
        assert not any(counter.failure(never, t, policy) for t in range(20))


async def test_a_ban_is_stored_once_rendered_and_lifted(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    try:
        start = await store.revision(db)
        assert await sip_bans.ban(db, "203.0.113.9", 1000.0, "ChallengeResponseFailed: 105", 100.0)
        assert not await sip_bans.ban(db, "203.0.113.9", 1100.0, "again", 200.0)  # banned already
        assert [b["address"] for b in await sip_bans.active(db, 500.0)] == ["203.0.113.9"]
        assert await sip_bans.active(db, 1000.0) == []  # its time is up
        assert await sip_bans.ban(db, "203.0.113.9", 3000.0, "back", 2000.0)  # after the end: banned anew
        await sip_bans.unban(db, "203.0.113.9", 2100.0, actor="boss", user_id=None)
        assert await sip_bans.active(db, 2100.0) == [] and await store.revision(db) == start + 3
        actions = [r[0] for r in await db.fetchall("SELECT action FROM audit_log ORDER BY id")]
        assert actions == ["sip_ban", "sip_ban", "sip_unban"]
    finally:
        await db.close()


def test_the_acl_holds_plain_addresses_only() -> None:
    text = render_telephony([], ctx=Context(bans=("203.0.113.9", "2001:db8::1", "1.2.3.4\n[evil]", "x;y")))[PJSIP_FILE]
    assert "[clinic-bans]\ntype = acl\ndeny = 2001:db8::1\ndeny = 203.0.113.9\n" in text
    assert "evil" not in text and "x;y" not in text and "x\\;y" not in text
    assert "clinic-bans" not in render_telephony([])[PJSIP_FILE]


def test_the_worker_counts_security_events_without_waiting() -> None:
    from pbx.ami.client import AmiEvent
    from pbx.workers.telephony import TelephonyWorker

    class Applier:
        providers: list = []

    worker = TelephonyWorker(Applier(), None, None, clock=lambda: 100.0,  # type: ignore[arg-type]
                             guard=guard.GuardPolicy(threshold=2))
    for _ in range(3):
        worker.on_ami(AmiEvent("ChallengeResponseFailed", {"RemoteAddress": "IPV4/UDP/203.0.113.9/5060",
                                                           "AccountID": "105"}, 100.0))
    worker.on_ami(AmiEvent("ChallengeSent", {"RemoteAddress": "IPV4/UDP/203.0.113.8/5060"}, 100.0))
    assert worker.to_ban == [("203.0.113.9", "ChallengeResponseFailed: 105")]


async def test_do_not_disturb_from_the_panel_is_astdb_and_the_queues_pause() -> None:
    """#37: «Не беспокоить» in the panel does what the phone's *78 does (AstDB, every queue
    paused, reason DND), and a phone on do-not-disturb found unpaused (a queue reload, an
    Asterisk restart) is paused again."""
    from pbx.workers.telephony import DND_FAMILY, TelephonyWorker

    class Ami:
        def __init__(self) -> None:
            self.actions: list[dict] = []
            self.db: dict[str, str] = {}

        async def action(self, a: dict, timeout: float = 0) -> list[dict]:
            self.actions.append(a)
            if a["Action"] == "DBPut":
                self.db[a["Key"]] = a["Val"]
            elif a["Action"] == "DBDel":
                self.db.pop(a["Key"], None)
            elif a["Action"] == "DBGetTree":
                return [{"Event": "DBGetTreeResponse", "Key": f"/{DND_FAMILY}/{k}", "Val": v} for k, v in self.db.items()]
            elif a["Action"] == "QueueStatus":
                return [{"Event": "QueueMember", "Queue": "reception-ringall", "StateInterface": "PJSIP/104", "Paused": "0"}]
            return [{"Response": "Success"}]

    class Applier:
        providers: list = []

    class Db:
        async def fetchall(self, *a: object) -> list:
            return []

    ami = Ami()
    worker = TelephonyWorker(Applier(), Db(), ami, clock=lambda: 100.0)  # type: ignore[arg-type]
    worker.refresh = worker._keep_dnd  # type: ignore[method-assign]  # only the DND part here
    await worker.set_dnd("104", True)
    assert ami.db == {"104": "1"} and worker.dnd == {"104"}
    pauses = [a for a in ami.actions if a["Action"] == "QueuePause"]
    assert pauses[0] == {"Action": "QueuePause", "Interface": "PJSIP/104", "Paused": "true", "Reason": "DND"}
    assert pauses[-1]["Queue"] == "reception-ringall"  # found unpaused: paused again
    await worker.set_dnd("104", False)
    assert ami.db == {} and worker.dnd == set()

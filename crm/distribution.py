"""Call distribution (seed 001): which calls pop cards for which users or workstations, for
several branches on one database or a call centre working beside the front desk.

A rule names any of a branch, a DID and a queue (empty = any). A viewer with no rules sees
every call that rings their phone; with rules, only calls matching at least one. Workstation
rules win over the user's own (a computer at the branch's front desk), as in the seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm.db import Database


@dataclass(frozen=True)
class Rule:
    branch_id: int | None
    did: str | None
    queue: str | None

    def matches(self, did: str, queue: str, branch_id: int | None) -> bool:
        return (
            (self.branch_id is None or self.branch_id == branch_id)
            and (not self.did or self.did == did)
            and (not self.queue or self.queue == queue)
        )


async def rules_for(db: Database, user_id: int, workstation: str | None) -> tuple[Rule, ...]:
    rows: list[Any] = []
    if workstation:
        rows = await db.fetchall(
            "SELECT branch_id, did, queue FROM distribution_rules WHERE workstation = ?", (workstation,)
        )
    if not rows:
        rows = await db.fetchall(
            "SELECT branch_id, did, queue FROM distribution_rules WHERE user_id = ?", (user_id,)
        )
    return tuple(Rule(r[0], r[1] or None, r[2] or None) for r in rows)


def allowed(rules: tuple[Rule, ...], did: str, queue: str, branch_id: int | None) -> bool:
    return not rules or any(r.matches(did, queue, branch_id) for r in rules)


async def list_rules(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT r.id, r.user_id, u.full_name, u.login, r.workstation, r.branch_id, b.name AS branch,"
        " r.did, r.queue FROM distribution_rules r LEFT JOIN users u ON u.id = r.user_id"
        " LEFT JOIN branches b ON b.id = r.branch_id ORDER BY r.id"
    )
    return [dict(r) for r in rows]


async def add_rule(db: Database, *, user_id: int | None, workstation: str | None,
                   branch_id: int | None, did: str | None, queue: str | None) -> int:
    if (user_id is None) == (not workstation):
        raise ValueError("Укажите пользователя или рабочее место")
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO distribution_rules (user_id, workstation, branch_id, did, queue)"
            " VALUES (?, ?, ?, ?, ?)",
            (user_id, (workstation or None) and workstation[:50], branch_id, did or None, queue or None),
        )
        return int(cur.lastrowid or 0)


async def delete_rule(db: Database, rule_id: int) -> None:
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM distribution_rules WHERE id = ?", (rule_id,))

"""The advertising channels' directory (seed 004): groups, channels, and the rules that find a
contact's channel (decided by the pure ``crm.rules.ad_channels``)."""

from __future__ import annotations

from typing import Any

from crm.db import Database
from crm.rules import ad_channels as rules_


class ChannelError(ValueError):
    pass


async def rules(db: Database) -> list[rules_.Rule]:
    rows = await db.fetchall(
        "SELECT r.id, r.kind, r.value, r.position, c.name AS channel, g.name AS grp FROM ad_channel_rules r"
        " JOIN ad_channels c ON c.id = r.channel_id JOIN ad_channel_groups g ON g.id = c.group_id ORDER BY r.id")
    return [rules_.Rule(r["id"], r["kind"], r["value"], r["channel"], r["grp"], r["position"]) for r in rows]


async def directory(db: Database) -> list[dict[str, Any]]:
    """Groups with their channels, each with its rules."""
    groups = [dict(r) for r in await db.fetchall("SELECT id, name FROM ad_channel_groups ORDER BY name")]
    channels = [dict(r) for r in await db.fetchall("SELECT id, group_id, name FROM ad_channels ORDER BY name")]
    all_rules = [dict(r) for r in await db.fetchall(
        "SELECT id, channel_id, kind, value, position FROM ad_channel_rules ORDER BY kind, position, id")]
    for c in channels:
        c["rules"] = [r for r in all_rules if r["channel_id"] == c["id"]]
    for g in groups:
        g["channels"] = [c for c in channels if c["group_id"] == g["id"]]
    return groups


async def add_channel(db: Database, group: str, name: str) -> int:
    group, name = " ".join(group.split())[:100], " ".join(name.split())[:100]
    if not group or not name:
        raise ChannelError("Нужны группа и название канала")
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO ad_channel_groups (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (group,))
        gid = (await (await tx.execute("SELECT id FROM ad_channel_groups WHERE name = ?", (group,))).fetchone())[0]
        await tx.execute("INSERT INTO ad_channels (group_id, name) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                         " SET group_id = excluded.group_id", (gid, name))
        return int((await (await tx.execute("SELECT id FROM ad_channels WHERE name = ?", (name,))).fetchone())[0])


async def add_rule(db: Database, channel_id: int, kind: str, value: str, position: int = 0) -> int:
    value = value.strip()[:200]
    if kind not in rules_.KIND_NAMES or not value:
        raise ChannelError("Выберите вид правила и значение")
    if kind == rules_.UTM and "=" not in value:
        raise ChannelError("UTM-метка пишется как utm_source=yandex")
    async with db.transaction() as tx:
        if not await (await tx.execute("SELECT 1 FROM ad_channels WHERE id = ?", (channel_id,))).fetchone():
            raise ChannelError("Нет такого канала")
        cur = await tx.execute("INSERT INTO ad_channel_rules (channel_id, kind, value, position) VALUES (?, ?, ?, ?)"
                               " RETURNING id", (channel_id, kind, value, position))
        return int((await cur.fetchone())[0])


async def remove_rule(db: Database, rule_id: int) -> None:
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM ad_channel_rules WHERE id = ?", (rule_id,))


async def set_spend(db: Database, channel_id: int, month: str, amount: float) -> None:
    """A channel's spend for one month (``2026-11``); 0 removes it."""
    if len(month) != 7 or month[4] != "-" or not (month[:4].isdigit() and month[5:].isdigit()) \
            or not 1 <= int(month[5:]) <= 12:
        raise ChannelError("Месяц пишется как 2026-11")
    if not 0 <= amount < 1e10:
        raise ChannelError("Сумма — неотрицательное число")
    async with db.transaction() as tx:
        if not await (await tx.execute("SELECT 1 FROM ad_channels WHERE id = ?", (channel_id,))).fetchone():
            raise ChannelError("Нет такого канала")
        if amount == 0:
            await tx.execute("DELETE FROM ad_spend WHERE channel_id = ? AND month = ?", (channel_id, month))
        else:
            await tx.execute("INSERT INTO ad_spend (channel_id, month, amount) VALUES (?, ?, ?)"
                             " ON CONFLICT (channel_id, month) DO UPDATE SET amount = excluded.amount",
                             (channel_id, month, amount))


async def spend(db: Database, first_month: str, last_month: str) -> dict[tuple[str, str], float]:
    """(channel name, month) -> amount for the months from ``first_month`` to ``last_month``."""
    rows = await db.fetchall("SELECT c.name, s.month, s.amount FROM ad_spend s JOIN ad_channels c ON c.id = s.channel_id"
                             " WHERE s.month BETWEEN ? AND ?", (first_month, last_month))
    return {(r[0], r[1]): float(r[2]) for r in rows}


async def spend_list(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall(
        "SELECT s.channel_id, c.name AS channel, s.month, s.amount FROM ad_spend s"
        " JOIN ad_channels c ON c.id = s.channel_id ORDER BY s.month DESC, c.name LIMIT 200")]

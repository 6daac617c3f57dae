"""The clinic's lists that the panel's filters and settings show: employees, clinic numbers,
branches, doctors, desk phones with who holds them, tag labels. Reads only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crm.db import Database, Reader


def _employees_sql(active_only: bool) -> str:
    return "SELECT id, full_name, login FROM users" + (" WHERE active = 1" if active_only else "") + \
        " ORDER BY full_name, login"


def _employees(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [{"id": r[0], "name": r[1] or r[2]} for r in rows]


async def employees(db: Database, *, active_only: bool = False) -> list[dict[str, Any]]:
    """``{id, name}`` for the filters: the full name, or the login when there is none."""
    return _employees(await db.fetch_tuples(_employees_sql(active_only)))


def employees_in(r: Reader, *, active_only: bool = False) -> list[dict[str, Any]]:
    """``employees`` inside a read function (one hop with the page's other reads)."""
    return _employees(r.fetch_tuples(_employees_sql(active_only)))


async def users_for_settings(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall(
        "SELECT id, login, full_name, role, history_access, appeals_access, active, must_change_password"
        " FROM users ORDER BY login")]


async def user_id(db: Database, login: str) -> int | None:
    row = await db.fetchone("SELECT id FROM users WHERE login = ?", (login,))
    return int(row[0]) if row else None


async def branches(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall("SELECT id, name, message_name FROM branches ORDER BY id")]


async def set_message_name(db: Database, branch_id: int, name: str) -> None:
    """Seed 002: the branch's «Название в сообщениях», inserted into WhatsApp and SMS texts."""
    name = " ".join(name.split())[:60]
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE branches SET message_name = ? WHERE id = ?", (name, branch_id))
        if cur.rowcount == 0:
            raise ValueError("Нет такого филиала")


async def clinic_numbers(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall(
        "SELECT did, ad_channel, hide_caller FROM clinic_numbers ORDER BY did")]


async def hidden_numbers(db: Database) -> set[str]:
    """The clinic numbers set to hide their callers' numbers (``rules.call_records.caller_hidden``)."""
    return {r[0] for r in await db.fetch_tuples("SELECT did FROM clinic_numbers WHERE hide_caller = 1")}


async def clinic_number_routes(db: Database) -> list[dict[str, Any]]:
    """The clinic's numbers as the telephony settings show them: route, branch, channel."""
    return [dict(r) for r in await db.fetchall(
        "SELECT n.did, n.queue, n.ad_channel, n.branch_id, b.name AS branch, n.hours, n.holidays, n.closed_message,"
        " n.closed_mobile, n.closed_callback FROM clinic_numbers n"
        " LEFT JOIN branches b ON b.id = n.branch_id ORDER BY n.did")]


async def hide_caller(db: Database, did: str, hidden: bool) -> bool:
    """Show calls on this clinic number without the caller's number (seed 000: ProDoctorov)."""
    async with db.transaction() as tx:
        cur = await tx.execute("UPDATE clinic_numbers SET hide_caller = ? WHERE did = ?", (int(hidden), did))
        return cur.rowcount > 0


@dataclass(frozen=True)
class NumberInfo:
    branch: int | None = None
    ad_channel: str = ""
    script: str = ""
    hide_caller: bool = False


def number_in(query: Callable[..., list[tuple[Any, ...]]], did: str) -> NumberInfo:
    """What the CRM knows of a clinic number, through a query function (a ``Reader``'s on the
    reading thread for the live cards; ``Database.query_now`` inline)."""
    if not did:
        return NumberInfo()
    rows = query("SELECT branch_id, ad_channel, script, hide_caller FROM clinic_numbers WHERE did = ?", (did,))
    return NumberInfo(rows[0][0], rows[0][1] or "", rows[0][2] or "", bool(rows[0][3])) if rows else NumberInfo()


async def doctors(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall("SELECT * FROM doctors ORDER BY active DESC, full_name")]


async def desk_phones_with_holders(db: Database) -> list[dict[str, Any]]:
    """Every desk phone and who is bound to it now (none: the holder fields are NULL)."""
    return [dict(r) for r in await db.fetchall(
        "SELECT d.extension, d.label, d.branch_id, d.queues, d.provisioned_at, d.secure, d.browser_user_id,"
        " u.id AS user_id, u.full_name, u.login"
        " FROM desk_phones d"
        " LEFT JOIN shift_bindings b ON b.extension = d.extension AND b.ended_at IS NULL"
        " LEFT JOIN users u ON u.id = b.user_id ORDER BY d.extension")]


async def desk_phone_branch(db: Database, extension: str) -> int | None:
    """The branch a desk phone belongs to (None: no branch, or no such phone)."""
    row = await db.fetchone("SELECT branch_id FROM desk_phones WHERE extension = ?", (extension,))
    return row[0] if row else None


# Every tag text set on calls (a deleted tag's too: old calls keep it): a skip scan on
# call_tags_label, each step seeking the next distinct text (a few dozen seeks, not a read of
# every tag of every call)
TAG_LABELS = ("WITH RECURSIVE t(label) AS (SELECT MIN(label) FROM call_tags UNION ALL"
              " SELECT (SELECT MIN(label) FROM call_tags WHERE label > t.label) FROM t WHERE t.label IS NOT NULL)"
              " SELECT label FROM t WHERE label IS NOT NULL")


async def tag_labels(db: Database) -> list[str]:
    """Every tag text set on calls (see TAG_LABELS)."""
    return [r[0] for r in await db.fetch_tuples(TAG_LABELS)]


def tag_labels_in(r: Reader) -> list[str]:
    """``tag_labels`` inside a read function."""
    return [row[0] for row in r.fetch_tuples(TAG_LABELS)]


async def tag_groups_with_deleted(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall("SELECT id, name, deleted_at FROM tag_groups ORDER BY name")]

"""Call tags (seed 000): groups and tags the clinic manages, set on a call after it ends.

A set tag keeps its own text (label) and group, so renaming or deleting a group later never
changes history or reports. Set tags cannot be edited. The pop-up's state per call says
whether the history shows the tags, or a dash (closed unsaved)."""

from __future__ import annotations

from typing import Any

from crm import clinic_settings
from crm.db import Database

OTHER = "Другая метка"


class TagError(ValueError):
    pass


async def groups(db: Database) -> list[dict[str, Any]]:
    gs = [dict(r) for r in await db.fetchall(
        "SELECT id, name FROM tag_groups WHERE deleted_at IS NULL ORDER BY id"
    )]
    tags = await db.fetchall(
        "SELECT id, group_id, name FROM tags WHERE deleted_at IS NULL ORDER BY id"
    )
    for g in gs:
        g["tags"] = [dict(t) for t in tags if t["group_id"] == g["id"]]
    return gs


async def create_group(db: Database, name: str) -> int:
    name = _name(name)
    async with db.transaction() as tx:
        return int((await tx.execute("INSERT INTO tag_groups (name) VALUES (?)", (name,))).lastrowid or 0)


async def rename_group(db: Database, group_id: int, name: str) -> None:
    name = _name(name)
    async with db.transaction() as tx:
        await tx.execute("UPDATE tag_groups SET name = ? WHERE id = ? AND deleted_at IS NULL",
                         (name, group_id))


async def delete_group(db: Database, group_id: int) -> None:
    """The group and its tags leave the pop-up; tags already set stay in history."""
    stamp = db.stamp()
    async with db.transaction() as tx:
        await tx.execute("UPDATE tag_groups SET deleted_at = ? WHERE id = ?", (stamp, group_id))
        await tx.execute("UPDATE tags SET deleted_at = ? WHERE group_id = ? AND deleted_at IS NULL",
                         (stamp, group_id))


async def add_tag(db: Database, group_id: int, name: str) -> int:
    name = _name(name)
    async with db.transaction() as tx:
        g = await (await tx.execute(
            "SELECT 1 FROM tag_groups WHERE id = ? AND deleted_at IS NULL", (group_id,)
        )).fetchone()
        if g is None:
            raise TagError("Нет такой группы меток")
        return int((await tx.execute(
            "INSERT INTO tags (group_id, name) VALUES (?, ?)", (group_id, name)
        )).lastrowid or 0)


async def delete_tag(db: Database, tag_id: int) -> None:
    async with db.transaction() as tx:
        await tx.execute("UPDATE tags SET deleted_at = ? WHERE id = ?", (tx.stamp(), tag_id))


def _name(name: str) -> str:
    name = " ".join(name.split())[:100]
    if not name:
        raise TagError("Введите название")
    return name


async def call_tags(db: Database, linkedid: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT ct.label, g.name AS group_name FROM call_tags ct"
        " LEFT JOIN tag_groups g ON g.id = ct.group_id WHERE ct.linkedid = ? ORDER BY ct.id",
        (linkedid,),
    )
    return [dict(r) for r in rows]


async def set_tags(db: Database, linkedid: str, tag_ids: list[int], other: str,
                   user_id: int | None) -> None:
    """Set the call's tags once: at least one tag (or "Другая метка" text) is required."""
    other = " ".join(other.split())[:200]
    if not tag_ids and not other:
        raise TagError("Выберите хотя бы одну метку")
    stamp = db.stamp()
    async with db.transaction() as tx:
        if await (await tx.execute("SELECT 1 FROM call_tags WHERE linkedid = ?", (linkedid,))).fetchone():
            raise TagError("Метки этого звонка уже установлены")
        for tag_id in dict.fromkeys(tag_ids):
            row = await (await tx.execute(
                "SELECT id, group_id, name FROM tags WHERE id = ? AND deleted_at IS NULL", (tag_id,)
            )).fetchone()
            if row is None:
                raise TagError("Нет такой метки")
            await tx.execute(
                "INSERT INTO call_tags (linkedid, tag_id, group_id, label, user_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (linkedid, row[0], row[1], row[2], user_id, stamp),
            )
        if other:
            await tx.execute(
                "INSERT INTO call_tags (linkedid, tag_id, group_id, label, user_id, created_at)"
                " VALUES (?, NULL, NULL, ?, ?, ?)",
                (linkedid, other, user_id, stamp),
            )
        await _prompt_state(tx, linkedid, user_id, "saved", stamp)


async def dismiss(db: Database, linkedid: str, user_id: int | None) -> None:
    async with db.transaction() as tx:
        await _prompt_state(tx, linkedid, user_id, "dismissed", tx.stamp(), keep_saved=True)


async def mark_prompted(db: Database, linkedid: str, user_id: int | None) -> None:
    """The pop-up was shown: closing the tab now leaves a dash in the history."""
    async with db.transaction() as tx:
        await _prompt_state(tx, linkedid, user_id, "pending", tx.stamp(), keep_saved=True)


async def _prompt_state(tx: Any, linkedid: str, user_id: int | None, state: str, stamp: str,
                        keep_saved: bool = False) -> None:
    guard = " WHERE tag_prompts.state <> 'saved'" if keep_saved else ""
    await tx.execute(
        "INSERT INTO tag_prompts (linkedid, user_id, state, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (linkedid) DO UPDATE SET state = excluded.state, user_id = excluded.user_id,"
        " updated_at = excluded.updated_at" + guard,
        (linkedid, user_id, state, stamp),
    )


async def should_prompt(db: Database, linkedid: str, converted: bool) -> bool:
    """Tags on, the call not tagged yet, and the clinic's mode allows it."""
    settings = await clinic_settings.get_all(db)
    if not settings["tags_enabled"]:
        return False
    if await db.fetchone("SELECT 1 FROM call_tags WHERE linkedid = ?", (linkedid,)):
        return False
    return settings["tags_mode"] == "always" or not converted

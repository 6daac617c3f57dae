"""Import runs and the patients and doctors of a clinic's MIS export, written batch by batch:
each batch with its run's progress in one transaction (so a stopped import resumes after the
last batch it committed, and the writer is never held longer than one batch). Upserts by the
MIS's own id: a second import of the same file changes nothing, an updated file updates; a card
typed by hand before the import (same name, and same birth date or number) is adopted rather
than doubled. Only the fields the file maps are touched (issue #33)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from crm import clinic_settings, phones
from crm.db import Database
from crm.rules.mis_rows import Rejection, Row, guardian_cycle

BATCH = 1000
REJECTIONS_KEPT = 10_000  # per run; the count stays exact beyond it
PATIENT_COLUMNS = ("last_name", "first_name", "middle_name", "birth_date", "sex", "email", "notes")


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def add(self, other: Counts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected


# --- runs --------------------------------------------------------------------------------

async def create_run(db: Database, kind: str, file_name: str, stored_path: str, headers: list[str],
                     mapping: list[str], rows_total: int, user_id: int | None) -> int:
    async with db.transaction() as tx:
        cur = await tx.execute(
            "INSERT INTO import_runs (kind, file_name, stored_path, headers, mapping, rows_total, user_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, file_name[:200], stored_path, json.dumps(headers, ensure_ascii=False),
             json.dumps(mapping), rows_total, user_id, tx.stamp()))
        return int(cur.lastrowid or 0)


async def get_run(db: Database, run_id: int) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT * FROM import_runs WHERE id = ?", (run_id,))
    if row is None:
        return None
    run = dict(row)
    run["headers"], run["mapping"] = json.loads(run["headers"]), json.loads(run["mapping"])
    return run


async def recent_runs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT id, kind, file_name, dry_run, state, rows_total, rows_done, inserted, updated,"
                             " unchanged, rejected, message, created_at, finished_at FROM import_runs"
                             " ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(r) for r in rows]


async def start_run(db: Database, run_id: int, mapping: list[str], dry_run: bool) -> None:
    """A run (again) from its first row: counts and refused rows of an earlier pass go."""
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM import_rejections WHERE run_id = ?", (run_id,))
        await tx.execute(
            "UPDATE import_runs SET mapping = ?, dry_run = ?, state = 'running', rows_done = 0, inserted = 0,"
            " updated = 0, unchanged = 0, rejected = 0, message = '', finished_at = NULL WHERE id = ?",
            (json.dumps(mapping), int(dry_run), run_id))


async def finish_run(db: Database, run_id: int, state: str, message: str = "") -> None:
    async with db.transaction() as tx:
        await tx.execute("UPDATE import_runs SET state = ?, message = ?, finished_at = ? WHERE id = ?",
                         (state, message[:500], tx.stamp(), run_id))


async def interrupted_runs(db: Database) -> list[int]:
    """Imports a stop cut short (they resume after their last committed batch)."""
    return [int(r[0]) for r in await db.fetchall("SELECT id FROM import_runs WHERE state = 'running' ORDER BY id")]


async def rejections(db: Database, run_id: int, limit: int = REJECTIONS_KEPT) -> list[tuple[int, str, str]]:
    rows = await db.fetchall("SELECT line, column_label, reason FROM import_rejections WHERE run_id = ?"
                             " ORDER BY line LIMIT ?", (run_id, limit))
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


async def files_in_use(db: Database) -> set[str]:
    """The stored files of runs still going (an upload sweep leaves them)."""
    return {str(r[0]) for r in await db.fetchall("SELECT stored_path FROM import_runs WHERE state = 'running'")}


async def remembered_mapping(db: Database, kind: str) -> dict[str, str]:
    return dict(await clinic_settings.get(db, f"import_mapping_{kind}") or {})


async def remember_mapping(db: Database, kind: str, remembered: dict[str, str]) -> None:
    await clinic_settings.put(db, f"import_mapping_{kind}", remembered)


async def record_batch(tx: Any, run_id: int | None, rows_done: int, counts: Counts, refused: list[Rejection]) -> None:
    """The batch's settlement, in the batch's own transaction."""
    if run_id is None:  # the sync API's writes belong to no run
        return
    row = await (await tx.execute("SELECT rejected FROM import_runs WHERE id = ?", (run_id,))).fetchone()
    room = max(0, REJECTIONS_KEPT - int(row[0] if row else 0))
    if refused[:room]:
        await tx.executemany("INSERT INTO import_rejections (run_id, line, column_label, reason) VALUES (?, ?, ?, ?)",
                             [(run_id, r.line, r.column, r.reason) for r in refused[:room]])
    await tx.execute(
        "UPDATE import_runs SET rows_done = ?, inserted = inserted + ?, updated = updated + ?,"
        " unchanged = unchanged + ?, rejected = rejected + ? WHERE id = ?",
        (rows_done, counts.inserted, counts.updated, counts.unchanged, counts.rejected, run_id))


async def settle(db: Database, run_id: int, rows_done: int, refused: list[Rejection]) -> None:
    """Refused rows found after the last batch (guardian links) join the run."""
    async with db.transaction() as tx:
        await record_batch(tx, run_id, rows_done, Counts(rejected=len({r.line for r in refused})), refused)


# --- patients ------------------------------------------------------------------------------

@dataclass
class Adoptable:
    """Cards typed by hand (no MIS id) an import may take over instead of doubling them:
    (last name, first name) -> [(id, birth date, numbers)]."""

    by_name: dict[tuple[str, str], list[tuple[int, str | None, set[str]]]] = field(default_factory=dict)

    def take(self, v: dict[str, Any]) -> int | None:
        key = (str(v.get("last_name", "")).lower(), str(v.get("first_name", "")).lower())
        for i, (pid, born, numbers) in enumerate(self.by_name.get(key, [])):
            if (born and born == v.get("birth_date")) or numbers & set(v.get("phones", [])):
                del self.by_name[key][i]
                return pid
        return None


async def adoptable(db: Database, rows_for: list[Row] | None = None) -> Adoptable:
    """Every hand-typed card (a whole import), or only those that could match ``rows_for``
    (the sync API's few rows: by their birth dates and numbers)."""
    found = Adoptable()
    where, params = "", []
    if rows_for is not None:
        births = sorted({r.values["birth_date"] for r in rows_for if r.values.get("birth_date")})
        numbers = sorted({e for r in rows_for for e in r.values.get("phones", [])})
        where = (f" AND (p.birth_date IN ({','.join('?' * len(births)) or 'NULL'}) OR p.id IN (SELECT patient_id FROM"
                 f" patient_phones WHERE e164 IN ({','.join('?' * len(numbers)) or 'NULL'})))")
        params = [*births, *numbers]
    rows = await db.fetchall(
        "SELECT p.id, p.last_name, p.first_name, p.birth_date, ph.e164 FROM patients p"
        " LEFT JOIN patient_phones ph ON ph.patient_id = p.id WHERE p.external_id IS NULL" + where + " ORDER BY p.id",
        params)
    cards: dict[int, tuple[tuple[str, str], str | None, set[str]]] = {}
    for r in rows:
        key = (str(r[1]).lower(), str(r[2]).lower())
        cards.setdefault(int(r[0]), (key, r[3], set()))[2].update([r[4]] if r[4] else [])
    for pid, (key, born, numbers) in cards.items():
        found.by_name.setdefault(key, []).append((pid, born, numbers))
    return found


async def _cards_by_external(tx: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await (await tx.execute(
        f"SELECT id, external_id, {', '.join(PATIENT_COLUMNS)} FROM patients WHERE external_id IN ({marks})",
        ids)).fetchall()
    cards = {str(r[1]): {"id": int(r[0]), **dict(zip(PATIENT_COLUMNS, r[2:], strict=True)), "phones": []}
             for r in rows}
    await _load_phones(tx, cards)
    return cards


async def _cards_by_id(tx: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    marks = ",".join("?" * len(ids))
    rows = await (await tx.execute(f"SELECT id, {', '.join(PATIENT_COLUMNS)} FROM patients WHERE id IN ({marks})",
                                   ids)).fetchall()
    cards = {int(r[0]): {"id": int(r[0]), **dict(zip(PATIENT_COLUMNS, r[1:], strict=True)), "phones": []}
             for r in rows}
    await _load_phones(tx, {str(k): v for k, v in cards.items()})
    return cards


async def _load_phones(tx: Any, cards: dict[str, dict[str, Any]]) -> None:
    by_id = {c["id"]: c for c in cards.values()}
    if not by_id:
        return
    marks = ",".join("?" * len(by_id))
    for r in await (await tx.execute(f"SELECT patient_id, e164 FROM patient_phones WHERE patient_id IN ({marks})"
                                     " ORDER BY id", list(by_id))).fetchall():
        by_id[int(r[0])]["phones"].append(str(r[1]))


async def _named_guardian(tx: Any, pid: int, v: dict[str, Any], dry_run: bool) -> bool:
    """A representative who is not a patient (name and number): the one known by that number is
    reused, as the card's own form does. True when something was (or would be) added."""
    name, phone = v.get("guardian_name") or "", v.get("guardian_phone")
    if not name and not phone:
        return False
    gid = None
    if phone:
        row = await (await tx.execute("SELECT owner_id FROM contact_phones WHERE e164 = ? AND owner_kind = 'guardian'"
                                      " ORDER BY id LIMIT 1", (phone,))).fetchone()
        gid = int(row[0]) if row else None
    elif name:
        row = await (await tx.execute("SELECT g.id FROM guardianships gs JOIN guardians g ON g.id = gs.guardian_id"
                                      " WHERE gs.patient_id = ? AND g.full_name = ?", (pid, name))).fetchone()
        gid = int(row[0]) if row else None
    if gid is not None and await (await tx.execute(
            "SELECT 1 FROM guardianships WHERE guardian_id = ? AND patient_id = ?", (gid, pid))).fetchone():
        return False
    if dry_run:
        return True
    if gid is None:
        gid = int((await tx.execute("INSERT INTO guardians (full_name) VALUES (?)", (name or phone,))).lastrowid or 0)
        if phone:
            await tx.execute("INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES (?, 'guardian', ?)",
                             (phone, gid))
    await tx.execute("INSERT INTO guardianships (guardian_id, patient_id, relation) VALUES (?, ?, ?)",
                     (gid, pid, v.get("guardian_relation", "")))
    return True


async def apply_patients(db: Database, run_id: int | None, rows: list[Row], refused: list[Rejection], rows_done: int,
                         dry_run: bool, adopt: Adoptable) -> Counts:
    """One batch. New cards and changed phones go in with one statement each for the whole
    batch (a round trip per row held the writer ~1 s per thousand rows)."""
    counts = Counts(rejected=len({r.line for r in refused}))
    async with db.transaction() as tx:
        cards = await _cards_by_external(tx, list({r.values["external_id"] for r in rows}))
        new: dict[str, dict[str, Any]] = {}  # MIS id -> the row's values, inserted after the loop
        phones_of: dict[int, list[str]] = {}  # card id -> its numbers now
        kinds = {e164: k for row in rows for e164, k in row.values.get("phone_kinds", {}).items()}
        for row in rows:
            v = row.values
            if v["external_id"] in new:  # the same id twice in one batch: the later row wins
                new[v["external_id"]] = v
                counts.updated += 1
                continue
            card = cards.get(v["external_id"])
            adopted = None if card is not None else adopt.take(v)
            if adopted is not None:
                card = (await _cards_by_id(tx, [adopted]))[adopted]
            if card is None:
                counts.inserted += 1
                new[v["external_id"]] = v
                continue
            changes = {k: v[k] for k in PATIENT_COLUMNS if k in v and v[k] != card[k]}
            new_phones = "phones" in v and v["phones"] != card["phones"]
            if not dry_run and (changes or adopted is not None):
                sets = ", ".join(f"{k} = ?" for k in [*changes, "external_id"])
                await tx.execute(f"UPDATE patients SET {sets} WHERE id = ?", (*changes.values(), v["external_id"],
                                                                                card["id"]))
                card.update(changes)
                cards[v["external_id"]] = card
            if new_phones:
                phones_of[card["id"]] = card["phones"] = list(v["phones"])
            guardian = await _named_guardian(tx, card["id"], v, dry_run)
            if changes or new_phones or guardian or adopted is not None:
                counts.updated += 1
            else:
                counts.unchanged += 1
        if not dry_run:
            await _insert_patients(tx, new, phones_of)
            await tx.executemany("DELETE FROM patient_phones WHERE patient_id = ?", [(pid,) for pid in phones_of])
            await tx.executemany("INSERT INTO patient_phones (patient_id, e164, kind) VALUES (?, ?, ?)",
                                 [(pid, e164, kinds.get(e164) or phones.kind(e164)) for pid, numbers in phones_of.items()
                                  for e164 in numbers])
        await record_batch(tx, run_id, rows_done, counts, refused)
    return counts


async def _insert_patients(tx: Any, new: dict[str, dict[str, Any]], phones_of: dict[int, list[str]]) -> None:
    """The batch's new cards; their numbers join ``phones_of``, their named representatives
    (rare in an export: most give the representative's MIS id) are added one by one."""
    if not new:
        return
    stamp = tx.stamp()
    await tx.executemany(
        f"INSERT INTO patients ({', '.join(PATIENT_COLUMNS)}, external_id, consent_pd, created_at)"
        f" VALUES ({', '.join('?' * len(PATIENT_COLUMNS))}, ?, 1, ?)",
        [(*(v.get(k, "" if k != "birth_date" else None) for k in PATIENT_COLUMNS), ext, stamp)
         for ext, v in new.items()])
    ids = await _ids_by_external(tx, list(new))
    for ext, v in new.items():
        if v.get("phones"):
            phones_of[ids[ext]] = list(v["phones"])
        await _named_guardian(tx, ids[ext], v, False)


async def _ids_by_external(tx: Any, ids: list[str]) -> dict[str, int]:
    marks = ",".join("?" * len(ids))
    rows = await (await tx.execute(f"SELECT external_id, id FROM patients WHERE external_id IN ({marks})",
                                   ids)).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


async def link_guardians(db: Database, links: list[tuple[int, str, str]], dry_run: bool,
                         in_file: set[str]) -> list[Rejection]:
    """Representatives who are patients themselves (the file's «ID представителя»), once every
    patient row is in: (line, ward's MIS id, representative's MIS id). The representative's own
    numbers identify them as a guardian, so their call shows their wards too. A dry run wrote
    no patient: the file's accepted ids (``in_file``) count as known."""
    refused: list[Rejection] = []
    known = {str(r[0]): str(r[1]) for r in await db.fetchall(
        "SELECT pw.external_id, pg.external_id FROM guardianships gs JOIN guardians g ON g.id = gs.guardian_id"
        " JOIN patients pg ON pg.id = g.patient_id JOIN patients pw ON pw.id = gs.patient_id"
        " WHERE pw.external_id IS NOT NULL AND pg.external_id IS NOT NULL")}
    for start in range(0, len(links), BATCH):
        async with db.transaction() as tx:
            chunk = links[start:start + BATCH]
            ids = await _ids_by_external(tx, list({ext for _, ward, guardian in chunk for ext in (ward, guardian)}))
            if dry_run:
                ids |= {ext: 0 for _, ward, guardian in chunk for ext in (ward, guardian) if ext in in_file}
            pairs: list[tuple[int, int]] = []  # (ward's card, representative's card)
            for line, ward, guardian in chunk:
                if known.get(ward) == guardian:
                    continue
                if guardian_cycle(known, ward, guardian):
                    refused.append(Rejection(line, "ID представителя", "представители образуют цикл"))
                elif guardian not in ids or ward not in ids:
                    refused.append(Rejection(line, "ID представителя", f"нет пациента с ID {guardian[:30]}"))
                else:
                    known[ward] = guardian
                    pairs.append((ids[ward], ids[guardian]))
            if not dry_run and pairs:
                await _link(tx, pairs)
    return refused


async def _guardian_ids(tx: Any, patient_ids: list[int]) -> dict[int, int]:
    """Patient -> the guardian record that stands for them."""
    rows = await (await tx.execute(f"SELECT patient_id, id FROM guardians WHERE patient_id IN"
                                   f" ({','.join('?' * len(patient_ids))})", patient_ids)).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


async def _link(tx: Any, pairs: list[tuple[int, int]]) -> None:
    """Wards to representatives who are patients: each representative's guardian record (made
    once, with the patient's numbers so that their call is known as a guardian's)."""
    patient_ids = sorted({g for _, g in pairs})
    gid_of = await _guardian_ids(tx, patient_ids)
    missing = [pid for pid in patient_ids if pid not in gid_of]
    if missing:
        cards = await _cards_by_id(tx, missing)
        await tx.executemany("INSERT INTO guardians (full_name, patient_id) VALUES (?, ?)",
                             [(" ".join(p for p in (c["last_name"], c["first_name"], c["middle_name"]) if p), pid)
                              for pid, c in cards.items()])
        made = await _guardian_ids(tx, missing)
        gid_of |= made
        await tx.executemany("INSERT INTO contact_phones (e164, owner_kind, owner_id) VALUES (?, 'guardian', ?)"
                             " ON CONFLICT DO NOTHING",
                             [(e164, made[pid]) for pid, c in cards.items() for e164 in c["phones"]])
    await tx.executemany("INSERT INTO guardianships (guardian_id, patient_id, relation) VALUES (?, ?, '')"
                         " ON CONFLICT DO NOTHING", [(gid_of[g], w) for w, g in pairs])


# --- doctors -------------------------------------------------------------------------------

async def apply_doctors(db: Database, run_id: int, rows: list[Row], refused: list[Rejection], rows_done: int,
                        dry_run: bool) -> Counts:
    counts = Counts(rejected=len({r.line for r in refused}))
    async with db.transaction() as tx:
        branches = {str(r[1]).lower(): int(r[0]) for r in await (await tx.execute(
            "SELECT id, name FROM branches")).fetchall()}
        for row in rows:
            v = row.values
            branch_id = None
            if v.get("branch"):
                branch_id = branches.get(v["branch"].lower())
                if branch_id is None:
                    refused.append(Rejection(row.line, "Филиал", f"нет филиала «{v['branch'][:40]}»"))
                    counts.rejected += 1
                    continue
            cur = await (await tx.execute("SELECT id, full_name, specialty, branch_id FROM doctors WHERE external_id = ?",
                                          (v["external_id"],))).fetchone()
            new = {"full_name": v["full_name"], "specialty": v.get("specialty", cur[2] if cur else ""),
                   "branch_id": branch_id if v.get("branch") else (cur[3] if cur else None)}
            if cur is None:
                counts.inserted += 1
                if not dry_run:
                    await tx.execute("INSERT INTO doctors (full_name, specialty, branch_id, external_id) VALUES (?, ?, ?, ?)",
                                     (new["full_name"], new["specialty"], new["branch_id"], v["external_id"]))
            elif (cur[1], cur[2], cur[3]) != (new["full_name"], new["specialty"], new["branch_id"]):
                counts.updated += 1
                if not dry_run:
                    await tx.execute("UPDATE doctors SET full_name = ?, specialty = ?, branch_id = ? WHERE id = ?",
                                     (new["full_name"], new["specialty"], new["branch_id"], cur[0]))
            else:
                counts.unchanged += 1
        await record_batch(tx, run_id, rows_done, counts, refused)
    return counts

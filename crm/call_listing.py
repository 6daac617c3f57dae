"""The call listing: the history's, the API's and the cards' reads of call records, a page at a
time with its legs, patients, tags, comments and conversion marks in a fixed number of
set-based reads on the reading thread. The SQL filters of the seeds' windows are built here
from ``crm.rules.windows``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm import directory, phones
from crm.db import Database, Reader
from crm.rules import call_records as records
from crm.rules import windows


@dataclass(frozen=True)
class CallFilter:
    since: str | None = None  # ISO UTC, inclusive
    until: str | None = None  # ISO UTC, exclusive
    call_type: str | None = None  # incoming | missed | outgoing | outgoing_unanswered | internal
    # missed_processed / missed_unprocessed: a missed call is processed when the clinic
    # reached the number (an answered call either way) within 24 hours after it
    missed_state: str | None = None
    user_id: int | None = None  # an employee who took part (answered, was rung, or placed it)
    query: str | None = None  # part of a phone number, or of a patient's name
    phones: tuple[str, ...] = ()  # exactly these E.164 numbers (a patient card: on the index)
    did: str | None = None
    converted: bool | None = None  # an appointment came of the call (seed 000's conversion)
    tag: str | None = None  # a tag's text as set on calls
    limit: int = 100
    offset: int = 0
    # keyset paging for whole exports: only calls before this (started_at, id), newest first
    before: tuple[str, int] | None = None


CALL_TYPES = records.CALL_TYPES
PROCESSING_WINDOW = windows.MISSED_CALL_PROCESSING  # not answered back within it: «Необработанный»
# The conversations with a missed call's number in the day after it (history filter, reports):
# windows.missed_call_processed in SQL
ANSWERED_AFTER = (
    "FROM calls r WHERE r.phone_e164 = c.phone_e164 AND r.answered_at IS NOT NULL"
    f" AND r.started_ts > c.started_ts AND r.started_ts <= c.started_ts + {PROCESSING_WINDOW}"
)
PROCESSED = f"EXISTS (SELECT 1 {ANSWERED_AFTER})"


# The call's patients: the candidates known when it rang, or whoever has the number now (a
# card created during the call).
CALL_PATIENTS = (
    "(SELECT patient_id FROM call_candidates WHERE call_id = c.id"
    " UNION SELECT patient_id FROM patient_phones WHERE e164 = c.phone_e164)"
)
# The same two sources apart: an appointment of "the call's patients" is one of either, and two
# EXISTS over plain IN lists cost a third less per call than one IN over a UNION (which builds a
# temporary table per call).
_PATIENT_SOURCES = (
    "(SELECT patient_id FROM call_candidates WHERE call_id = c.id)",
    "(SELECT patient_id FROM patient_phones WHERE e164 = c.phone_e164)",
)


def _patients_have(appointment: str) -> str:
    """An appointment of the call's patients (CALL_PATIENTS) meeting ``appointment`` exists."""
    return "(" + " OR ".join(f"EXISTS (SELECT 1 FROM appointments a WHERE a.patient_id IN {src} AND {appointment})"
                             for src in _PATIENT_SOURCES) + ")"


# Converted (seed 000): windows.appointment_converts in SQL. The clinic's setting (CONVERSION_NEARBY)
# is read by the SQL itself (an uncorrelated EXISTS, evaluated once a statement), so that the
# history, its filter, the tag pop-up and the reports' days always agree with the setting.
CONVERSION_WINDOW = windows.APPOINTMENT_LINK
NEARBY_ON = (f"EXISTS (SELECT 1 FROM clinic_settings WHERE key = '{windows.CONVERSION_NEARBY}'"
             " AND value = 'true')")
# EXISTS apart, not one with an OR inside: each then searches its own index (the booking's call,
# the patient's appointments by creation time) instead of scanning every appointment for every
# call (21.9 s -> 0.14 s for 20 000 calls, bench/scale_pages.py).
CONVERTED = (
    f"(EXISTS (SELECT 1 FROM appointments a WHERE a.call_linkedid = c.linkedid) OR (c.answered_at IS NOT NULL AND {NEARBY_ON} AND "
    + _patients_have(f"a.created_ts >= c.started_ts - {CONVERSION_WINDOW} AND a.created_ts <= c.ended_ts + {CONVERSION_WINDOW}")
    + "))"
)
# "Whether the patient had an appointment at the time of the call": windows.appointment_pending
HAD_APPOINTMENT = _patients_have("a.created_ts < c.started_ts AND a.starts_ts > c.started_ts AND a.status <> 'cancelled'")


def conversion_nearby(db: Reader) -> bool:
    """The clinic's setting CONVERSION_NEARBY, read in the caller's snapshot."""
    return bool(db.fetch_tuples(f"SELECT 1 WHERE {NEARBY_ON}"))


async def converted_live(db: Database, linkedid: str, e164: str | None, started_ts: float,
                         ended_ts: float) -> bool:
    """Conversion of a call that may not be stored yet (the post-call tag pop-up, shown after
    a conversation): the same rule as CONVERTED, the call's patients being the number's."""
    row = await db.fetchone(  # two indexed searches (see CONVERTED), not one OR over every appointment
        "SELECT EXISTS (SELECT 1 FROM appointments a WHERE a.call_linkedid = ?) OR"
        f" ({NEARBY_ON} AND EXISTS (SELECT 1 FROM"
        " appointments a WHERE a.patient_id IN (SELECT patient_id FROM patient_phones WHERE e164 = ?)"
        " AND a.created_ts >= ? AND a.created_ts <= ?))",
        (linkedid, e164 or "", started_ts - CONVERSION_WINDOW, ended_ts + CONVERSION_WINDOW),
    )
    return bool(row and row[0])


def conditions(f: CallFilter) -> tuple[list[str], list[Any]]:
    """The filter as SQL conditions on ``calls c`` (the history, its CSV, the reports)."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if f.since:
        where.append("c.started_at >= ?")
        params.append(f.since)
    if f.until:
        where.append("c.started_at < ?")
        params.append(f.until)
    if f.phones:
        where.append(f"c.phone_e164 IN ({','.join('?' * len(f.phones))})")
        params += list(f.phones)
    if f.before is not None:
        # an upper bound the index can range over, then the tie on id (an OR of the two ranges
        # made SQLite read the whole rest of the period and sort it, for every page)
        where.append("c.started_at <= ? AND (c.started_at < ? OR c.id < ?)")
        params += [f.before[0], f.before[0], f.before[1]]
    if f.call_type:
        where.append("c.call_type = ?")
        params.append(f.call_type)
    if f.did:
        where.append("c.did = ?")
        params.append(f.did)
    if f.converted is not None:
        where.append(("" if f.converted else "NOT ") + CONVERTED)
    if f.tag:
        where.append("EXISTS (SELECT 1 FROM call_tags t WHERE t.linkedid = c.linkedid AND t.label = ?)")
        params.append(f.tag)
    if f.missed_state in ("missed_processed", "missed_unprocessed"):
        where.append("c.call_type = 'missed'")
        where.append(("" if f.missed_state == "missed_processed" else "NOT ") + PROCESSED)
    if f.user_id is not None:
        where.append(
            "(c.answered_by_user = ? OR c.originated_by = ? OR EXISTS (SELECT 1 FROM call_legs l"
            " WHERE l.call_id = c.id AND l.user_id = ?))"
        )
        params += [f.user_id, f.user_id, f.user_id]
    search = phones.search_clause(
        f.query or "", "c.phone_e164 LIKE ?",
        "EXISTS (SELECT 1 FROM call_candidates cc JOIN patients p ON p.id = cc.patient_id"
        " WHERE cc.call_id = c.id AND (p.last_name || ' ' || p.first_name || ' ' || p.middle_name) LIKE ?)",
    )
    if search:
        where.append(search[0])
        params += search[1]
    return where, params


async def list_calls(db: Database, f: CallFilter) -> list[dict[str, Any]]:
    """One page of calls with their legs, patients, tags and comment: a fixed number of
    queries whatever the page size (the details are fetched set-based, not per call), all in
    one hop to the reading thread."""
    return await db.read(lambda r: _list_calls(r, f))


async def history_page(db: Database, f: CallFilter) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """A history page's reads in one hop, one after another: its calls, and its filters' lists
    (active employees, tag texts). Side by side on two threads they fought for the GIL and
    took half as long again."""
    return await db.read(lambda r: (_list_calls(r, f), directory.employees_in(r, active_only=True),
                                    directory.tag_labels_in(r)))


def _list_calls(r: Reader, f: CallFilter) -> list[dict[str, Any]]:
    where, params = conditions(f)
    # The page's ids first, in index order, then its rows (with the conversion tests in the
    # select list of one query, SQLite computed them for every row of the rest of the period
    # before sorting).
    page = ("SELECT c.id FROM calls c WHERE " + " AND ".join(where)
            + " ORDER BY c.started_at DESC, c.id DESC LIMIT ? OFFSET ?")
    rows = r.fetch_dicts(f"SELECT c.* FROM calls c WHERE c.id IN ({page}) ORDER BY c.started_at DESC, c.id DESC",
                         [*params, max(1, min(f.limit, 1000)), max(0, f.offset)])
    return _with_details(r, rows)


async def unprocessed_missed(db: Database, since: str) -> list[tuple[int, str, str]]:
    """(id, number, started_at) of every missed call since ``since`` not processed yet, the
    history's own rule, without the details: the home page groups them by number and reads
    the details of the few it shows (``calls_by_ids``)."""
    where, params = conditions(CallFilter(since=since, missed_state="missed_unprocessed"))
    hidden = await directory.hidden_numbers(db)  # such a caller's number is shown nowhere: ""
    return [(int(i), "" if records.caller_hidden(direction, did in hidden) else n or "", at)
            for i, n, at, direction, did in await db.fetch_tuples(
                "SELECT c.id, c.phone_e164, c.started_at, c.direction, c.did FROM calls c WHERE "
                + " AND ".join(where), params)]


async def calls_by_ids(db: Database, ids: list[int]) -> dict[int, dict[str, Any]]:
    """These calls with their details, by id, in one hop."""
    def read(r: Reader) -> dict[int, dict[str, Any]]:
        rows = r.fetch_dicts(f"SELECT c.* FROM calls c WHERE c.id IN ({','.join('?' * len(ids))})", ids)
        return {c["id"]: c for c in _with_details(r, rows)}
    return await db.read(read) if ids else {}


async def get_call(db: Database, call_id: int) -> dict[str, Any] | None:
    def one(r: Reader) -> dict[str, Any] | None:
        rows = r.fetch_dicts("SELECT c.* FROM calls c WHERE c.id = ?", (call_id,))
        return _with_details(r, rows)[0] if rows else None
    return await db.read(one)


async def get_call_by_linkedid(db: Database, linkedid: str) -> dict[str, Any] | None:
    def one(r: Reader) -> dict[str, Any] | None:
        rows = r.fetch_dicts("SELECT c.* FROM calls c WHERE c.linkedid = ?", (linkedid,))
        return _with_details(r, rows)[0] if rows else None
    return await db.read(one)


def _rows_in(r: Reader, sql: str, keys: list[Any]) -> list[Any]:
    """``sql`` has one ``{keys}`` hole for an IN list; run in chunks under SQLite's limit."""
    out: list[Any] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        out += r.fetch_tuples(sql.format(keys=",".join("?" * len(chunk))), chunk)
    return out


def _with_details(db: Reader, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not calls:
        return calls
    details = _read_details(db, calls)
    for call in calls:
        _decorate(call, details)
    return calls


@dataclass
class _Details:
    """What a page of calls shows beside its rows, read for the whole page at once."""
    legs: dict[int, list[dict[str, Any]]]
    patients: dict[int, list[dict[str, Any]]]
    labels: dict[str, list[tuple[str, str]]]  # linkedid -> (group, label)
    prompts: dict[str, str]
    hidden: set[str]
    guardians: dict[int, str]
    comments: dict[str, dict[str, Any]]
    user_names: dict[int, str]
    people: dict[tuple[str, int], str]
    converted: set[int]
    had_appointment: set[int]


def _read_details(db: Reader, calls: list[dict[str, Any]]) -> _Details:
    ids = [c["id"] for c in calls]
    lids = [c["linkedid"] for c in calls]
    legs: dict[int, list[dict[str, Any]]] = {}
    for r in _rows_in(db, "SELECT call_id, extension, user_id, outcome, missed, started_at, answered_at,"
                      " ended_at FROM call_legs WHERE call_id IN ({keys}) ORDER BY started_at, id", ids):
        legs.setdefault(r[0], []).append({"extension": r[1], "user_id": r[2], "outcome": r[3], "missed": bool(r[4]),
                                          "started_at": r[5], "answered_at": r[6], "ended_at": r[7]})
    patients: dict[int, list[dict[str, Any]]] = {}
    # sorted here, not by ORDER BY p.id: to spare that sort, SQLite scanned every patient of a
    # small clinic (2,000) against the 500 call ids (46 ms instead of 0.5)
    for r in sorted(_rows_in(db, "SELECT cc.call_id, p.id, p.last_name, p.first_name, p.middle_name, p.birth_date"
                             " FROM call_candidates cc JOIN patients p ON p.id = cc.patient_id"
                             " WHERE cc.call_id IN ({keys})", ids), key=lambda r: r[1]):
        patients.setdefault(r[0], []).append(
            {"id": r[1], "full_name": " ".join(x for x in (r[2], r[3], r[4]) if x), "birth_date": r[5]})
    labels: dict[str, list[tuple[str, str]]] = {}
    for r in _rows_in(db, "SELECT ct.linkedid, ct.label, g.name FROM call_tags ct LEFT JOIN tag_groups g"
                      " ON g.id = ct.group_id WHERE ct.linkedid IN ({keys}) ORDER BY ct.id", lids):
        labels.setdefault(r[0], []).append((r[2] or "", r[1]))
    prompts = {r[0]: r[1] for r in _rows_in(
        db, "SELECT linkedid, state FROM tag_prompts WHERE linkedid IN ({keys})", lids)}
    hidden = {r[0] for r in db.fetch_tuples("SELECT did FROM clinic_numbers WHERE hide_caller = 1")}
    guardian_ids = sorted({c["counterpart_id"] for c in calls if c["caller_kind"] == "guardian" and c["counterpart_id"]})
    guardians = {r[0]: r[1] for r in _rows_in(
        db, "SELECT id, full_name FROM guardians WHERE id IN ({keys})", guardian_ids)} if guardian_ids else {}
    user_ids = sorted({c["answered_by_user"] for c in calls if c["answered_by_user"]}
                      | {c["originated_by"] for c in calls if c["originated_by"]})
    user_names = {r[0]: r[1] for r in _rows_in(
        db, "SELECT id, full_name FROM users WHERE id IN ({keys})", user_ids)} if user_ids else {}
    converted, had_appointment = _appointment_marks(
        db, calls, {call_id: {p["id"] for p in theirs} for call_id, theirs in patients.items()})
    return _Details(legs, patients, labels, prompts, hidden, guardians, _read_comments(db, lids), user_names,
                    _read_people(db, calls), converted, had_appointment)


def _read_comments(db: Reader, lids: list[str]) -> dict[str, dict[str, Any]]:
    # the comments' patients apart: joined in, PostgreSQL hashed the whole patients table for a
    # page's hundred comments (29 of a CSV page's 100 ms)
    noted = _rows_in(db, "SELECT cc.linkedid, cc.caller_type, t.name, cc.text, cc.user_id, cc.patient_id"
                     " FROM call_comments cc LEFT JOIN call_topics t ON t.id = cc.topic_id"
                     " WHERE cc.linkedid IN ({keys})", lids)
    noted_ids = sorted({r[5] for r in noted if r[5]})
    named = {r[0]: {"id": r[0], "full_name": " ".join(x for x in (r[1], r[2], r[3]) if x), "birth_date": r[4]}
             for r in _rows_in(db, "SELECT id, last_name, first_name, middle_name, birth_date FROM patients"
                               " WHERE id IN ({keys})", noted_ids)} if noted_ids else {}
    return {r[0]: {"caller_type": r[1], "topic": r[2], "text": r[3], "user_id": r[4], "patient_id": r[5],
                   "patient": named.get(r[5]) if r[5] else None} for r in noted}


def _read_people(db: Reader, calls: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """The employees' and contractors' names of a page's callers."""
    people: dict[tuple[str, int], str] = {}
    for kind, table, column in (("employee", "employees", "full_name"), ("contractor", "contractors", "name")):
        wanted = sorted({c["counterpart_id"] for c in calls if c["caller_kind"] == kind and c["counterpart_id"]})
        if wanted:
            for r in _rows_in(db, f"SELECT id, {column} FROM {table} WHERE id IN ({{keys}})", wanted):
                people[(kind, r[0])] = r[1]
    return people


def _decorate(call: dict[str, Any], d: _Details) -> None:
    # people, not extensions: who answered (or placed) the call, and who the employee or
    # contractor on the line was
    call["answered_by_name"] = d.user_names.get(call["answered_by_user"] or call["originated_by"] or 0, "")
    call["counterpart_name"] = d.people.get((call["caller_kind"], call["counterpart_id"] or 0), "")
    call["legs"] = d.legs.get(call["id"], [])
    call["patients"] = d.patients.get(call["id"], [])
    call["missed_by"] = [leg["extension"] for leg in call["legs"] if leg["missed"]]
    call["counts_for_stats"] = bool(call["counts_for_stats"])
    call["converted"] = call["id"] in d.converted
    call["had_appointment"] = call["id"] in d.had_appointment
    call["tags"] = [label for _, label in d.labels.get(call["linkedid"], [])]
    call["tag_groups"] = group_tags(d.labels.get(call["linkedid"], []))
    prompt = d.prompts.get(call["linkedid"])
    # a dash in the history: the tag pop-up was shown and closed without saving
    call["tags_skipped"] = bool(prompt and prompt != "saved" and not call["tags"])
    comment = d.comments.get(call["linkedid"])
    call["comment"] = comment and {k: v for k, v in comment.items() if k != "patient"}
    if comment and comment["patient"]:
        # seed 001: the administrator named who really called («жена за мужа, мама за
        # ребенка»): the call is that patient's
        call["patients"] = [comment["patient"]]
    # seed 000: a clinic number set to hide callers shows no number, even of a known patient
    call["guardian"] = d.guardians.get(call["counterpart_id"]) if call["caller_kind"] == "guardian" else None
    call["number_hidden"] = records.caller_hidden(call["direction"], call["did"] in d.hidden)
    if call["number_hidden"]:
        call["phone_e164"], call["caller_raw"] = None, ""
    call.pop("started_ts", None)  # internal: interval arithmetic only
    call.pop("ended_ts", None)


def _appointment_marks(db: Reader, calls: list[dict[str, Any]],
                       candidates: dict[int, set[int]]) -> tuple[set[int], set[int]]:
    """The calls converted (CONVERTED) and those whose patient had an appointment then
    (HAD_APPOINTMENT), for a page at once: the numbers' owners and the patients' appointments
    in three reads beside the ``candidates`` already read (call id -> patient ids), the windows'
    predicates in Python (two correlated searches per row cost 15 µs each).
    ``tests/unit/test_rules_windows.py`` checks this equals the SQL forms."""
    phones_of = sorted({c["phone_e164"] for c in calls if c["phone_e164"]})
    patients_of = {call_id: set(ids) for call_id, ids in candidates.items()}
    owners: dict[str, set[int]] = {}
    for e164, patient_id in _rows_in(db, "SELECT e164, patient_id FROM patient_phones WHERE e164 IN ({keys})",
                                     phones_of):
        owners.setdefault(e164, set()).add(patient_id)
    for c in calls:
        if c["phone_e164"] in owners:
            patients_of.setdefault(c["id"], set()).update(owners[c["phone_e164"]])
    wanted = sorted(set().union(*patients_of.values())) if patients_of else []
    appointments: dict[int, list[tuple[float, float, bool]]] = {}
    for patient_id, created, starts, status in _rows_in(
            db, "SELECT patient_id, created_ts, starts_ts, status FROM appointments WHERE patient_id IN ({keys})",
            wanted):
        appointments.setdefault(patient_id, []).append((created, starts, status == "cancelled"))
    booked = {r[0] for r in _rows_in(db, "SELECT DISTINCT call_linkedid FROM appointments"
                                         " WHERE call_linkedid IN ({keys})", [c["linkedid"] for c in calls])}
    nearby = conversion_nearby(db)
    converted: set[int] = set()
    had: set[int] = set()
    for c in calls:
        theirs = [a for p in patients_of.get(c["id"], ()) for a in appointments.get(p, ())]
        answered = c["answered_at"] is not None
        if c["linkedid"] in booked or any(
                windows.appointment_converts(created=created, call_started=c["started_ts"], call_ended=c["ended_ts"],
                                             answered=answered, booked_from_call=False, nearby=nearby)
                for created, _, _ in theirs):
            converted.add(c["id"])
        if any(windows.appointment_pending(created=created, starts=starts, cancelled=cancelled,
                                           call_started=c["started_ts"]) for created, starts, cancelled in theirs):
            had.add(c["id"])
    return converted, had


def group_tags(tagged: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Seed 000: several tags on one call are shown grouped, by their group, in the order set
    ("" for «Другая метка», which belongs to no group)."""
    groups: dict[str, list[str]] = {}
    for group, label in tagged:
        groups.setdefault(group, []).append(label)
    return [{"group": g, "tags": labels} for g, labels in groups.items()]

-- The minimal schedule (doctors, working hours, appointments, waiting list, tasks), the
-- patient's context (money, family, insurance), comments on calls, call tags, clinic
-- settings and call distribution. Times of appointments are the branch's local wall time
-- ("2026-11-23T10:00") plus epoch seconds for interval arithmetic.

ALTER TABLE patients ADD COLUMN balance REAL NOT NULL DEFAULT 0;      -- > 0 advance, < 0 debt
ALTER TABLE patients ADD COLUMN extra_notes TEXT NOT NULL DEFAULT '';  -- the additional comment
ALTER TABLE patients ADD COLUMN family_id INTEGER;

CREATE TABLE insurance_policies (
    id          INTEGER PRIMARY KEY,
    patient_id  INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    company     TEXT NOT NULL,
    number      TEXT NOT NULL,
    valid_from  TEXT NOT NULL,   -- ISO date
    valid_to    TEXT NOT NULL
);

CREATE TABLE doctors (
    id          INTEGER PRIMARY KEY,
    full_name   TEXT NOT NULL,
    specialty   TEXT NOT NULL,
    branch_id   INTEGER REFERENCES branches(id),
    employee_id INTEGER REFERENCES employees(id),
    active      INTEGER NOT NULL DEFAULT 1
);

-- weekday: 0 = Monday; minutes from local midnight
CREATE TABLE working_hours (
    id           INTEGER PRIMARY KEY,
    doctor_id    INTEGER NOT NULL REFERENCES doctors(id) ON DELETE CASCADE,
    weekday      INTEGER NOT NULL,
    start_minute INTEGER NOT NULL,
    end_minute   INTEGER NOT NULL,
    slot_minutes INTEGER NOT NULL DEFAULT 30
);

CREATE TABLE appointments (
    id            INTEGER PRIMARY KEY,
    patient_id    INTEGER NOT NULL REFERENCES patients(id),
    doctor_id     INTEGER NOT NULL REFERENCES doctors(id),
    branch_id     INTEGER REFERENCES branches(id),
    guardian_id   INTEGER REFERENCES guardians(id),
    starts_at     TEXT NOT NULL,          -- local wall time
    ends_at       TEXT NOT NULL,
    starts_ts     REAL NOT NULL,
    ends_ts       REAL NOT NULL,
    status        TEXT NOT NULL DEFAULT 'unconfirmed',  -- unconfirmed | confirmed | cancelled | completed | no_show
    source        TEXT NOT NULL DEFAULT 'panel',        -- panel | online | robot | import
    kind          TEXT NOT NULL DEFAULT 'visit',        -- visit | online_consultation
    comment       TEXT NOT NULL DEFAULT '',
    price         REAL NOT NULL DEFAULT 0,              -- charged when completed
    payer         TEXT NOT NULL DEFAULT 'self',         -- self | insurance
    call_linkedid TEXT,                                 -- the call it was booked from / during
    needs_reschedule INTEGER NOT NULL DEFAULT 0,
    notify_requested INTEGER NOT NULL DEFAULT 0,       -- the booking form's «СМС оповещение» tick
    created_by    INTEGER REFERENCES users(id),
    created_at    TEXT NOT NULL,
    created_ts    REAL NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX appointments_doctor ON appointments (doctor_id, starts_ts);
CREATE INDEX appointments_patient ON appointments (patient_id, created_ts);
CREATE INDEX appointments_call ON appointments (call_linkedid);

CREATE TABLE waiting_list (
    id          INTEGER PRIMARY KEY,
    patient_id  INTEGER NOT NULL REFERENCES patients(id),
    specialty   TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    created_by  INTEGER REFERENCES users(id),
    created_at  TEXT NOT NULL,
    closed_at   TEXT
);

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY,
    patient_id  INTEGER REFERENCES patients(id),
    title       TEXT NOT NULL,
    due_date    TEXT NOT NULL,     -- ISO date
    created_by  INTEGER REFERENCES users(id),
    created_at  TEXT NOT NULL,
    done_at     TEXT
);

-- "Темы разговоров": a directory the clinic edits
CREATE TABLE call_topics (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    active  INTEGER NOT NULL DEFAULT 1
);

-- One comment per call, keyed by linkedid: it can be written while the call still rings
-- (the call row is stored when the call ends), later from the history, or for a manual entry.
CREATE TABLE call_comments (
    linkedid     TEXT PRIMARY KEY,
    caller_type  TEXT NOT NULL,
    topic_id     INTEGER REFERENCES call_topics(id),
    patient_id   INTEGER REFERENCES patients(id),
    text         TEXT NOT NULL DEFAULT '',
    user_id      INTEGER REFERENCES users(id),
    updated_at   TEXT NOT NULL
);

CREATE TABLE tag_groups (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE TABLE tags (
    id          INTEGER PRIMARY KEY,
    group_id    INTEGER NOT NULL REFERENCES tag_groups(id),
    name        TEXT NOT NULL,
    deleted_at  TEXT
);
-- Tags set on a call keep their text: deleting a group or a tag never changes history.
CREATE TABLE call_tags (
    id          INTEGER PRIMARY KEY,
    linkedid    TEXT NOT NULL,
    tag_id      INTEGER REFERENCES tags(id),   -- NULL for "Другая метка"
    group_id    INTEGER REFERENCES tag_groups(id),
    label       TEXT NOT NULL,
    user_id     INTEGER REFERENCES users(id),
    created_at  TEXT NOT NULL
);
CREATE INDEX call_tags_linkedid ON call_tags (linkedid);
-- The post-call tag pop-up: shown (pending), closed unsaved (dismissed) or saved.
CREATE TABLE tag_prompts (
    linkedid    TEXT PRIMARY KEY,
    user_id     INTEGER REFERENCES users(id),
    state       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE clinic_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Which calls pop cards for whom. A user (or a workstation) with no rule sees every call
-- that rings their phone; with rules, only calls matching one of them.
CREATE TABLE distribution_rules (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER REFERENCES users(id) ON DELETE CASCADE,
    workstation  TEXT,
    branch_id    INTEGER REFERENCES branches(id),
    did          TEXT,
    queue        TEXT
);

ALTER TABLE calls ADD COLUMN ended_ts REAL NOT NULL DEFAULT 0;
UPDATE calls SET ended_ts = (julianday(ended_at) - 2440587.5) * 86400.0;

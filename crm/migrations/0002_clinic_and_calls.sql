-- Clinic structure (branches, numbers, desk phones, staff, contractors, guardians),
-- shift bindings and the call records written by the call tracker.

CREATE TABLE branches (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    message_name  TEXT NOT NULL DEFAULT '',   -- "name in messages" for SMS/WhatsApp
    time_zone     TEXT NOT NULL DEFAULT 'Europe/Moscow'
);

-- The clinic's virtual numbers (DIDs) and where each one's calls come from.
CREATE TABLE clinic_numbers (
    id          INTEGER PRIMARY KEY,
    did         TEXT NOT NULL UNIQUE,           -- as the operator sends it: 74951110001
    branch_id   INTEGER REFERENCES branches(id),
    ad_channel  TEXT NOT NULL DEFAULT '',       -- advertising channel shown on the card
    script      TEXT NOT NULL DEFAULT ''        -- conversation script for that channel
);

CREATE TABLE desk_phones (
    id         INTEGER PRIMARY KEY,
    extension  TEXT NOT NULL UNIQUE,            -- PJSIP endpoint: 101
    branch_id  INTEGER REFERENCES branches(id),
    label      TEXT NOT NULL DEFAULT ''
);

CREATE TABLE employees (
    id         INTEGER PRIMARY KEY,
    full_name  TEXT NOT NULL,
    position   TEXT NOT NULL DEFAULT '',
    branch_id  INTEGER REFERENCES branches(id),
    user_id    INTEGER UNIQUE REFERENCES users(id),   -- the employee's login, if any
    active     INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE contractors (
    id     INTEGER PRIMARY KEY,
    name   TEXT NOT NULL,
    notes  TEXT NOT NULL DEFAULT ''
);

-- A person who calls for patients (a parent, the guardian of an incapacitated patient).
-- patient_id is set when the guardian is also a patient of the clinic.
CREATE TABLE guardians (
    id          INTEGER PRIMARY KEY,
    full_name   TEXT NOT NULL,
    patient_id  INTEGER REFERENCES patients(id)
);

CREATE TABLE guardianships (
    guardian_id INTEGER NOT NULL REFERENCES guardians(id) ON DELETE CASCADE,
    patient_id  INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    relation    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (guardian_id, patient_id)
);

-- Every phone number the clinic knows, whoever it belongs to (one row per owner).
CREATE TABLE contact_phones (
    id          INTEGER PRIMARY KEY,
    e164        TEXT NOT NULL,
    owner_kind  TEXT NOT NULL,       -- employee | contractor | guardian
    owner_id    INTEGER NOT NULL,
    UNIQUE (e164, owner_kind, owner_id)
);
CREATE INDEX contact_phones_e164 ON contact_phones (e164);

-- "1 administrator = 1 login = 1 phone": who works on which desk phone, with history.
CREATE TABLE shift_bindings (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    extension   TEXT NOT NULL,
    started_at  TEXT NOT NULL,       -- ISO UTC
    ended_at    TEXT                 -- NULL while it holds
);
CREATE INDEX shift_bindings_ext ON shift_bindings (extension, started_at);
CREATE INDEX shift_bindings_user ON shift_bindings (user_id, started_at);

CREATE TABLE calls (
    id               INTEGER PRIMARY KEY,
    linkedid         TEXT NOT NULL UNIQUE,
    direction        TEXT NOT NULL,      -- incoming | outgoing | internal
    call_type        TEXT NOT NULL,      -- incoming | missed | outgoing | outgoing_unanswered | internal
    did              TEXT NOT NULL DEFAULT '',
    branch_id        INTEGER REFERENCES branches(id),
    caller_raw       TEXT NOT NULL DEFAULT '',
    callee_raw       TEXT NOT NULL DEFAULT '',
    phone_e164       TEXT,               -- the outside party's number, normalised
    queue            TEXT NOT NULL DEFAULT '',
    answered_by_ext  TEXT NOT NULL DEFAULT '',
    answered_by_user INTEGER REFERENCES users(id),
    started_at       TEXT NOT NULL,
    answered_at      TEXT,
    ended_at         TEXT NOT NULL,
    wait_seconds     REAL NOT NULL DEFAULT 0,
    talk_seconds     REAL NOT NULL DEFAULT 0,
    hangup_by        TEXT NOT NULL DEFAULT '',
    recording        TEXT NOT NULL DEFAULT '',
    caller_kind      TEXT NOT NULL DEFAULT 'unknown', -- patient | patients | guardian | employee | contractor | unknown
    patient_id       INTEGER REFERENCES patients(id),
    counterpart_id   INTEGER,            -- employee / contractor / guardian id for those kinds
    counts_for_stats INTEGER NOT NULL DEFAULT 1,   -- 0 for employees' and contractors' calls
    originated_by    INTEGER REFERENCES users(id),
    source           TEXT NOT NULL DEFAULT 'ami',  -- ami | cdr
    created_at       TEXT NOT NULL
);
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_phone ON calls (phone_e164, started_at);
CREATE INDEX calls_type ON calls (call_type, started_at);

CREATE TABLE call_legs (
    id           INTEGER PRIMARY KEY,
    call_id      INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    extension    TEXT NOT NULL,
    user_id      INTEGER REFERENCES users(id),   -- bound to that phone at that moment
    outcome      TEXT NOT NULL,   -- answered | no_answer | answered_elsewhere | busy | failed
    missed       INTEGER NOT NULL DEFAULT 0,
    started_at   TEXT NOT NULL,
    answered_at  TEXT,
    ended_at     TEXT
);
CREATE INDEX call_legs_call ON call_legs (call_id);
CREATE INDEX call_legs_user ON call_legs (user_id, started_at);

-- The patients a caller could be ("Пациенты: 2", a guardian's wards).
CREATE TABLE call_candidates (
    call_id     INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    patient_id  INTEGER NOT NULL REFERENCES patients(id),
    PRIMARY KEY (call_id, patient_id)
);

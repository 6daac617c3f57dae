-- clinic-pbx CRM, first schema: staff accounts and patients with their phones.
-- Portable SQL (SQLite now, PostgreSQL later): no SQLite-only types in columns.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE,
    full_name     TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL DEFAULT 'administrator',  -- administrator | director | settings_admin
    password_hash TEXT NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL
);

CREATE TABLE patients (
    id          INTEGER PRIMARY KEY,
    last_name   TEXT NOT NULL,
    first_name  TEXT NOT NULL,
    middle_name TEXT NOT NULL DEFAULT '',
    birth_date  TEXT,            -- ISO date
    notes       TEXT NOT NULL DEFAULT '',
    consent_pd  INTEGER NOT NULL DEFAULT 0,   -- consent to personal-data processing
    notify_opt_out INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);

CREATE TABLE patient_phones (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    e164       TEXT NOT NULL,   -- +79991234567
    kind       TEXT NOT NULL DEFAULT 'mobile',  -- mobile | landline | foreign
    UNIQUE (patient_id, e164)
);
CREATE INDEX patient_phones_e164 ON patient_phones (e164);

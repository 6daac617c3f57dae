-- Import from the clinic's medical information system (issue #33): the MIS's own ids, so a
-- second import of the same file changes nothing and an updated file updates; and each
-- import's run (its mapping, progress for a resume, the rows it refused).
ALTER TABLE patients ADD COLUMN external_id TEXT;
ALTER TABLE patients ADD COLUMN sex TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN email TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX patients_external ON patients (external_id);
ALTER TABLE doctors ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX doctors_external ON doctors (external_id);
ALTER TABLE appointments ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX appointments_external ON appointments (external_id);

CREATE TABLE import_runs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,                    -- patients | doctors | appointments
    file_name    TEXT NOT NULL,
    stored_path  TEXT NOT NULL,
    headers      TEXT NOT NULL DEFAULT '[]',       -- JSON
    mapping      TEXT NOT NULL DEFAULT '[]',       -- JSON: one field per column
    dry_run      INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL DEFAULT 'uploaded', -- uploaded | running | done | failed
    rows_total   INTEGER NOT NULL DEFAULT 0,
    rows_done    INTEGER NOT NULL DEFAULT 0,       -- data rows settled: a resume starts after them
    inserted     INTEGER NOT NULL DEFAULT 0,
    updated      INTEGER NOT NULL DEFAULT 0,
    unchanged    INTEGER NOT NULL DEFAULT 0,
    rejected     INTEGER NOT NULL DEFAULT 0,
    message      TEXT NOT NULL DEFAULT '',
    user_id      INTEGER REFERENCES users(id),
    created_at   TEXT NOT NULL,
    finished_at  TEXT
);

CREATE TABLE import_rejections (
    run_id        INTEGER NOT NULL REFERENCES import_runs(id) ON DELETE CASCADE,
    line          INTEGER NOT NULL,
    column_label  TEXT NOT NULL,
    reason        TEXT NOT NULL
);
CREATE INDEX import_rejections_run ON import_rejections (run_id, line);

-- One persistent job table for every robot scenario (the escort's details, confirmation and
-- reminder today; the website callback robot next): a job is about a subject (an appointment,
-- a request), runs one scenario, is due at a time, and is unique on its key, so a restart
-- never runs it twice. The escort's jobs move here with their ids, so robot calls and
-- messages keep pointing at them. Whether a job was asked for by hand («Позвонить сейчас»)
-- is a column now, no longer a "manual:" prefix of its key.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    job_key       TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,                    -- escort | callback: which handler family
    scenario      TEXT NOT NULL,                    -- escort: details | confirmation | reminder
    subject_kind  TEXT NOT NULL,                    -- appointment | request
    subject_id    INTEGER NOT NULL,
    subject_ts    REAL,                             -- the subject's time when planned (an appointment's start)
    due_ts        REAL NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',  -- pending | running | done | skipped
    step          TEXT NOT NULL DEFAULT 'start',    -- the scenario's own steps (escort: start | call | messages)
    mode          TEXT NOT NULL DEFAULT '',         -- robot | messages, once decided
    attempts      INTEGER NOT NULL DEFAULT 0,       -- robot calls placed
    forced        INTEGER NOT NULL DEFAULT 0,       -- «СМС оповещение» from the booking form
    manual        INTEGER NOT NULL DEFAULT 0,       -- asked for by hand: no window, no retries
    outcome       TEXT NOT NULL DEFAULT '',
    reason        TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, due_ts);
CREATE INDEX jobs_subject ON jobs (subject_kind, subject_id);

INSERT INTO jobs (id, job_key, kind, scenario, subject_kind, subject_id, subject_ts, due_ts, state, step,
                  mode, attempts, forced, manual, outcome, reason, created_at, updated_at)
SELECT id, job_key, 'escort', scenario, 'appointment', appointment_id, starts_ts, due_ts, state, step,
       mode, attempts, forced, CASE WHEN job_key LIKE 'manual:%' THEN 1 ELSE 0 END, outcome, reason,
       created_at, updated_at
FROM escort_jobs;

-- robot calls and messages now point at jobs (SQLite cannot change a foreign key in place)
CREATE TABLE robot_calls_new (
    id              INTEGER PRIMARY KEY,
    job_id          INTEGER NOT NULL REFERENCES jobs(id),
    appointment_id  INTEGER REFERENCES appointments(id),
    attempt         INTEGER NOT NULL,
    channel_id      TEXT NOT NULL UNIQUE,
    started_ts      REAL NOT NULL,
    answered_ts     REAL,
    ended_ts        REAL,
    outcome         TEXT NOT NULL DEFAULT '',
    keys            TEXT NOT NULL DEFAULT '',
    UNIQUE (job_id, attempt)
);
INSERT INTO robot_calls_new SELECT id, job_id, appointment_id, attempt, channel_id, started_ts, answered_ts,
    ended_ts, outcome, keys FROM robot_calls;
DROP TABLE robot_calls;
ALTER TABLE robot_calls_new RENAME TO robot_calls;

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY,
    msg_key         TEXT NOT NULL UNIQUE,
    job_id          INTEGER REFERENCES jobs(id),
    appointment_id  INTEGER REFERENCES appointments(id),
    scenario        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    channel         TEXT NOT NULL,
    fallback        TEXT NOT NULL DEFAULT '',
    phone           TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_try_ts     REAL NOT NULL,
    gateway_id      TEXT,
    error           TEXT NOT NULL DEFAULT '',
    price           REAL NOT NULL DEFAULT 0,
    created_ts      REAL NOT NULL,
    sent_ts         REAL,
    written_off_day TEXT
);
INSERT INTO outbox_new SELECT id, msg_key, job_id, appointment_id, scenario, kind, channel, fallback, phone,
    body, state, attempts, next_try_ts, gateway_id, error, price, created_ts, sent_ts, written_off_day FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_state ON outbox (state, next_try_ts);
CREATE INDEX outbox_phone ON outbox (phone, created_ts);
CREATE INDEX outbox_gateway ON outbox (gateway_id);

DROP TABLE escort_jobs;

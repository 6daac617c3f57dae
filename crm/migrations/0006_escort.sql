-- Pre-visit escort (seed 002): persistent jobs, robot calls, the message outbox with delivery
-- states and prices, daily write-offs, and a per-appointment log of what was done and why not.

ALTER TABLE patients ADD COLUMN push_enabled INTEGER NOT NULL DEFAULT 0;  -- the app's notifications on
ALTER TABLE appointments ADD COLUMN anonymous INTEGER NOT NULL DEFAULT 0;
ALTER TABLE doctors ADD COLUMN anonymous_appointments INTEGER NOT NULL DEFAULT 0;
-- the planner looks only at appointments changed since its last pass
CREATE INDEX appointments_updated ON appointments (updated_at);

-- One job per appointment, scenario and appointment time: the key makes planning idempotent
-- and a rescheduled appointment gets new confirmation/reminder jobs (details are never resent).
CREATE TABLE escort_jobs (
    id              INTEGER PRIMARY KEY,
    job_key         TEXT NOT NULL UNIQUE,
    scenario        TEXT NOT NULL,              -- details | confirmation | reminder
    appointment_id  INTEGER NOT NULL REFERENCES appointments(id),
    starts_ts       REAL NOT NULL,              -- the appointment time this job is for
    due_ts          REAL NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',  -- pending | running | done | skipped
    step            TEXT NOT NULL DEFAULT 'start',    -- start | call | messages
    mode            TEXT NOT NULL DEFAULT '',         -- robot | messages, once decided
    attempts        INTEGER NOT NULL DEFAULT 0,       -- robot calls placed
    forced          INTEGER NOT NULL DEFAULT 0,       -- «СМС оповещение» from the booking form
    outcome         TEXT NOT NULL DEFAULT '',
    reason          TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX escort_jobs_due ON escort_jobs (state, due_ts);
CREATE INDEX escort_jobs_appointment ON escort_jobs (appointment_id);

-- A robot call is written before it is placed: after a crash an unfinished one is closed as
-- "interrupted" and never placed again.
CREATE TABLE robot_calls (
    id              INTEGER PRIMARY KEY,
    job_id          INTEGER NOT NULL REFERENCES escort_jobs(id),
    appointment_id  INTEGER NOT NULL REFERENCES appointments(id),
    attempt         INTEGER NOT NULL,
    channel_id      TEXT NOT NULL UNIQUE,
    started_ts      REAL NOT NULL,
    answered_ts     REAL,
    ended_ts        REAL,
    outcome         TEXT NOT NULL DEFAULT '',   -- empty while the call is on
    keys            TEXT NOT NULL DEFAULT '',
    UNIQUE (job_id, attempt)
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    msg_key         TEXT NOT NULL UNIQUE,
    job_id          INTEGER REFERENCES escort_jobs(id),
    appointment_id  INTEGER REFERENCES appointments(id),
    scenario        TEXT NOT NULL,
    kind            TEXT NOT NULL,              -- details | confirm | reschedule_link | reminder
    channel         TEXT NOT NULL,              -- push | whatsapp | sms
    fallback        TEXT NOT NULL DEFAULT '',   -- the channels still to try, comma separated
    phone           TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued',  -- queued | sent | delivered | failed | no_account | undelivered
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_try_ts     REAL NOT NULL,
    gateway_id      TEXT,
    error           TEXT NOT NULL DEFAULT '',
    price           REAL NOT NULL DEFAULT 0,
    created_ts      REAL NOT NULL,
    sent_ts         REAL,
    written_off_day TEXT
);
CREATE INDEX outbox_state ON outbox (state, next_try_ts);
CREATE INDEX outbox_phone ON outbox (phone, created_ts);
CREATE INDEX outbox_gateway ON outbox (gateway_id);

CREATE TABLE write_offs (
    id          INTEGER PRIMARY KEY,
    day         TEXT NOT NULL,      -- the clinic's local date of the messages
    scenario    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    messages    INTEGER NOT NULL,
    amount      REAL NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (day, scenario, channel)
);

CREATE TABLE escort_log (
    id              INTEGER PRIMARY KEY,
    appointment_id  INTEGER NOT NULL REFERENCES appointments(id),
    scenario        TEXT NOT NULL,
    ts              REAL NOT NULL,
    what            TEXT NOT NULL,      -- call | message | skip | reply | status
    channel         TEXT NOT NULL DEFAULT '',
    outcome         TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX escort_log_appointment ON escort_log (appointment_id, ts);
CREATE INDEX escort_log_ts ON escort_log (ts);

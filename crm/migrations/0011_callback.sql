-- The website callback robot (seed 003): requests from the clinic's site or an aggregator (or
-- typed in by an administrator), the robot's attempts at them, the sources that may send them,
-- and an e-mail outbox. A request is worked by one job of kind 'callback' in the jobs table.

CREATE TABLE callback_sources (
    id           INTEGER PRIMARY KEY,
    code         TEXT NOT NULL UNIQUE,        -- what the webhook's "source" field says
    spoken_name  TEXT NOT NULL,               -- «Заявка на запись с {spoken_name}»
    secret       TEXT NOT NULL DEFAULT '',    -- HMAC-SHA256 key of the signed webhook
    token        TEXT NOT NULL DEFAULT '',    -- or a plain bearer token (the simpler option)
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL
);

CREATE TABLE callback_requests (
    id            INTEGER PRIMARY KEY,
    source_id     INTEGER REFERENCES callback_sources(id),
    source_name   TEXT NOT NULL,              -- spoken and written name of where it came from
    external_id   TEXT,                       -- the sender's id: (source_id, external_id) is unique
    branch_id     INTEGER REFERENCES branches(id),
    patient_name  TEXT NOT NULL DEFAULT '',
    phone         TEXT NOT NULL,              -- E.164
    patient_id    INTEGER REFERENCES patients(id),
    doctor        TEXT NOT NULL DEFAULT '',
    service       TEXT NOT NULL DEFAULT '',
    desired       TEXT NOT NULL DEFAULT '',   -- the desired time, as the patient put it
    comment       TEXT NOT NULL DEFAULT '',
    utm           TEXT NOT NULL DEFAULT '{}', -- JSON object of utm_* tags
    created_ts    REAL NOT NULL,
    created_by    INTEGER REFERENCES users(id),   -- typed in by hand
    joined        INTEGER NOT NULL DEFAULT 0,     -- more requests of the same number and source joined it
    state         TEXT NOT NULL DEFAULT 'open',   -- open | closed
    outcome       TEXT NOT NULL DEFAULT '',       -- contacted | already_booked | other_means | gave_up | cancelled
    closed_ts     REAL,
    first_try_ts  REAL,
    sms_sent      INTEGER NOT NULL DEFAULT 0,
    call_linkedid TEXT NOT NULL DEFAULT '',       -- the call in which the patient was reached
    UNIQUE (source_id, external_id)
);
CREATE INDEX callback_requests_created ON callback_requests (created_ts);
CREATE INDEX callback_requests_phone ON callback_requests (phone, created_ts);

CREATE TABLE callback_attempts (
    id            INTEGER PRIMARY KEY,
    request_id    INTEGER NOT NULL REFERENCES callback_requests(id),
    job_id        INTEGER NOT NULL REFERENCES jobs(id),
    attempt       INTEGER NOT NULL,
    channel_base  TEXT NOT NULL UNIQUE,       -- the admin channels are <base>-<ext> (the CRM call: linkedid)
    started_ts    REAL NOT NULL,
    admin_ext     TEXT NOT NULL DEFAULT '',   -- who answered
    admin_ts      REAL,
    key_ts        REAL,
    patient_ts    REAL,                       -- the patient answered (bridged)
    ended_ts      REAL,
    talk_seconds  REAL NOT NULL DEFAULT 0,
    leg           TEXT NOT NULL DEFAULT '',   -- clinic | patient | '' (where it failed)
    outcome       TEXT NOT NULL DEFAULT '',   -- empty while the attempt is on
    reason        TEXT NOT NULL DEFAULT '',
    linkedid      TEXT NOT NULL DEFAULT '',   -- the CRM call of the attempt (when the patient was dialled)
    UNIQUE (job_id, attempt)
);

-- A signed webhook is refused when its signature was seen before (a replay).
CREATE TABLE webhook_seen (
    signature  TEXT PRIMARY KEY,
    seen_ts    REAL NOT NULL
);

CREATE TABLE mail_outbox (
    id           INTEGER PRIMARY KEY,
    mail_key     TEXT NOT NULL UNIQUE,
    request_id   INTEGER REFERENCES callback_requests(id),
    to_addrs     TEXT NOT NULL,              -- comma separated
    subject      TEXT NOT NULL,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'queued',  -- queued | sent | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_try_ts  REAL NOT NULL,
    error        TEXT NOT NULL DEFAULT '',
    created_ts   REAL NOT NULL,
    sent_ts      REAL
);
CREATE INDEX mail_outbox_state ON mail_outbox (state, next_try_ts);

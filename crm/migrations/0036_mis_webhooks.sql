-- Outgoing webhooks to the clinic's MIS (issue #33): each event once (its key is unique), sent
-- until the receiver answers 2xx, with back-off; the rows are the delivery log.
CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY,
    event         TEXT NOT NULL,            -- call_finished | appointment_booked | robot_outcome | request_closed
    event_key     TEXT NOT NULL UNIQUE,     -- e.g. call_finished:42
    payload       TEXT NOT NULL,            -- the JSON body sent, fixed when the event is found
    created_ts    REAL NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',   -- pending | sending | delivered | failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_ts       REAL NOT NULL,
    last_status   INTEGER,
    last_error    TEXT NOT NULL DEFAULT '',
    delivered_ts  REAL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_ts);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_ts);

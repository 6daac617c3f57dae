-- The clinic's own queues (issue #29): Asterisk's queue-<id>, rendered into queues_clinic.conf with
-- the phones that ring in them; the demo's two stay in the shipped queues.conf.
CREATE TABLE clinic_queues (
    id            INTEGER PRIMARY KEY,
    title         TEXT NOT NULL UNIQUE,
    strategy      TEXT NOT NULL DEFAULT 'ringall',
    ring_seconds  INTEGER NOT NULL DEFAULT 15,
    max_wait      INTEGER NOT NULL DEFAULT 120,
    on_timeout    TEXT NOT NULL DEFAULT 'hangup'   -- hangup | callback | another queue's name
);

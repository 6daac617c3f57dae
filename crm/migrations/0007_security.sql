-- Server-side sessions, the audit trail, and API tokens with scopes and expiry.

-- The encrypted cookie carries a random token; only its SHA-256 is kept here. A session is
-- valid while it is not ended, was seen within the idle timeout and is younger than the
-- absolute limit; logout, deactivation, a password or role change end it at once.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    created_ts    REAL NOT NULL,
    seen_ts       REAL NOT NULL,
    ended_ts      REAL,
    ended_reason  TEXT NOT NULL DEFAULT '',
    address       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_open_by_user ON sessions (user_id) WHERE ended_ts IS NULL;

-- Who opened or changed what. Append-only: the triggers refuse UPDATE and DELETE.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    at_ts        REAL NOT NULL,
    user_id      INTEGER,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    object_kind  TEXT NOT NULL DEFAULT '',
    object_id    TEXT NOT NULL DEFAULT '',
    detail       TEXT NOT NULL DEFAULT '',
    address      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at_ts);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- existing tokens keep what they could do: read calls
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'calls:read';
ALTER TABLE api_tokens ADD COLUMN expires_ts REAL;

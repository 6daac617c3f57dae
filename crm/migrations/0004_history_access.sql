-- Per-user right to the call history (seed 000): none, read, or edit (add comments, tags).
ALTER TABLE users ADD COLUMN history_access TEXT NOT NULL DEFAULT 'read';

-- Epoch seconds of the call's start, for interval arithmetic that stays portable
-- ("called back within 24 hours": r.started_ts <= c.started_ts + 86400).
ALTER TABLE calls ADD COLUMN started_ts REAL NOT NULL DEFAULT 0;
UPDATE calls SET started_ts = (julianday(started_at) - 2440587.5) * 86400.0;
CREATE INDEX calls_phone_ts ON calls (phone_e164, started_ts);

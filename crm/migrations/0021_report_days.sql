-- The reports' daily aggregates (crm/call_stats.py, crm/rules/call_stats.py).
--
-- Every write that can change a report's figure marks the span of time whose calls it may
-- change, by a trigger, in the same transaction as the write: no write path can forget it.
-- Before a report is read, the clinic days those spans fall on are recomputed from the rows.
-- The triggers know nothing of the clinic's time zone: spans are epoch seconds.
CREATE TABLE report_dirty (
    from_ts REAL NOT NULL,
    to_ts   REAL NOT NULL
);

-- clinic days (YYYY-MM-DD) to recompute, taken from report_dirty in the clinic's time zone
CREATE TABLE report_days_todo (day TEXT PRIMARY KEY);

-- the time zone the stored days were cut in: another one recomputes everything
CREATE TABLE report_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE report_days (
    tag      TEXT NOT NULL,     -- '' = every call, else the calls with this tag text
    user_id  INTEGER NOT NULL,  -- 0 = every call, else the calls this employee took part in
    day      TEXT NOT NULL,
    did      TEXT NOT NULL,
    incoming INTEGER NOT NULL, missed INTEGER NOT NULL, outgoing INTEGER NOT NULL,
    outgoing_unanswered INTEGER NOT NULL, booked INTEGER NOT NULL,
    own_answered INTEGER NOT NULL, own_outgoing INTEGER NOT NULL, own_outgoing_unanswered INTEGER NOT NULL,
    own_booked INTEGER NOT NULL, own_talk_seconds REAL NOT NULL, own_talked INTEGER NOT NULL,
    own_missed INTEGER NOT NULL, called_back INTEGER NOT NULL, got_through INTEGER NOT NULL,
    tagged INTEGER NOT NULL, dismissed INTEGER NOT NULL,
    minutes_to_process TEXT NOT NULL, unreturned TEXT NOT NULL, tag_calls TEXT NOT NULL,
    group_tagged TEXT NOT NULL,
    PRIMARY KEY (tag, user_id, day, did)
) WITHOUT ROWID;

CREATE INDEX report_days_day ON report_days (day);

-- the appointments trigger finds a patient's calls by their candidates too
CREATE INDEX call_candidates_patient ON call_candidates (patient_id);

-- calls: the call's own instant; an answered call also processes the missed calls of its number
-- in the day before it (windows.MISSED_CALL_PROCESSING = 86400 s)
CREATE TRIGGER report_calls_insert AFTER INSERT ON calls BEGIN
    INSERT INTO report_dirty VALUES (NEW.started_ts - CASE WHEN NEW.answered_at IS NULL THEN 0 ELSE {{MISSED_CALL_PROCESSING}} END,
                                     NEW.started_ts);
END;

CREATE TRIGGER report_calls_update AFTER UPDATE ON calls
WHEN NOT (OLD.call_type IS NEW.call_type AND OLD.direction IS NEW.direction AND OLD.did IS NEW.did
          AND OLD.answered_by_user IS NEW.answered_by_user AND OLD.originated_by IS NEW.originated_by
          AND OLD.talk_seconds IS NEW.talk_seconds AND OLD.answered_at IS NEW.answered_at
          AND OLD.counts_for_stats IS NEW.counts_for_stats AND OLD.phone_e164 IS NEW.phone_e164
          AND OLD.started_ts IS NEW.started_ts AND OLD.ended_ts IS NEW.ended_ts AND OLD.linkedid IS NEW.linkedid)
BEGIN
    INSERT INTO report_dirty VALUES (OLD.started_ts - {{MISSED_CALL_PROCESSING}}, OLD.started_ts);
    INSERT INTO report_dirty VALUES (NEW.started_ts - {{MISSED_CALL_PROCESSING}}, NEW.started_ts);
END;

CREATE TRIGGER report_calls_delete AFTER DELETE ON calls BEGIN
    INSERT INTO report_dirty VALUES (OLD.started_ts - {{MISSED_CALL_PROCESSING}}, OLD.started_ts);
END;

CREATE TRIGGER report_legs_insert AFTER INSERT ON call_legs BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE id = NEW.call_id;
END;

CREATE TRIGGER report_legs_update AFTER UPDATE ON call_legs
WHEN NOT (OLD.call_id IS NEW.call_id AND OLD.user_id IS NEW.user_id AND OLD.missed IS NEW.missed) BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE id IN (OLD.call_id, NEW.call_id);
END;

CREATE TRIGGER report_legs_delete AFTER DELETE ON call_legs BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE id = OLD.call_id;
END;

CREATE TRIGGER report_candidates_insert AFTER INSERT ON call_candidates BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE id = NEW.call_id;
END;

CREATE TRIGGER report_candidates_delete AFTER DELETE ON call_candidates BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE id = OLD.call_id;
END;

CREATE TRIGGER report_tags_insert AFTER INSERT ON call_tags BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid = NEW.linkedid;
END;

CREATE TRIGGER report_tags_update AFTER UPDATE ON call_tags BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid IN (OLD.linkedid, NEW.linkedid);
END;

CREATE TRIGGER report_tags_delete AFTER DELETE ON call_tags BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid = OLD.linkedid;
END;

CREATE TRIGGER report_prompts_insert AFTER INSERT ON tag_prompts BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid = NEW.linkedid;
END;

CREATE TRIGGER report_prompts_update AFTER UPDATE ON tag_prompts
WHEN NOT (OLD.state IS NEW.state AND OLD.linkedid IS NEW.linkedid) BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid IN (OLD.linkedid, NEW.linkedid);
END;

CREATE TRIGGER report_prompts_delete AFTER DELETE ON tag_prompts BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid = OLD.linkedid;
END;

-- a phone added to or taken from a card changes which calls are the patient's (conversion)
CREATE TRIGGER report_phones_insert AFTER INSERT ON patient_phones BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE phone_e164 = NEW.e164;
END;

CREATE TRIGGER report_phones_update AFTER UPDATE ON patient_phones
WHEN NOT (OLD.e164 IS NEW.e164 AND OLD.patient_id IS NEW.patient_id) BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE phone_e164 IN (OLD.e164, NEW.e164);
END;

CREATE TRIGGER report_phones_delete AFTER DELETE ON patient_phones BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE phone_e164 = OLD.e164;
END;

-- an appointment converts the call it was booked from and the patient's calls around its
-- creation (windows.APPOINTMENT_LINK = 1800 s; 7200 here, wider on purpose: marking more is harmless)
CREATE TRIGGER report_appointments_insert AFTER INSERT ON appointments BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid = NEW.call_linkedid;
    INSERT INTO report_dirty SELECT c.started_ts, c.started_ts FROM calls c
        WHERE c.phone_e164 IN (SELECT e164 FROM patient_phones WHERE patient_id = NEW.patient_id)
        AND c.started_ts <= NEW.created_ts + 7200 AND c.ended_ts >= NEW.created_ts - 7200;
    INSERT INTO report_dirty SELECT c.started_ts, c.started_ts FROM call_candidates cc JOIN calls c ON c.id = cc.call_id
        WHERE cc.patient_id = NEW.patient_id AND c.started_ts <= NEW.created_ts + 7200
        AND c.ended_ts >= NEW.created_ts - 7200;
END;

CREATE TRIGGER report_appointments_update AFTER UPDATE ON appointments
WHEN NOT (OLD.patient_id IS NEW.patient_id AND OLD.created_ts IS NEW.created_ts
          AND OLD.call_linkedid IS NEW.call_linkedid) BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid IN (OLD.call_linkedid, NEW.call_linkedid);
    INSERT INTO report_dirty SELECT c.started_ts, c.started_ts FROM calls c
        WHERE c.phone_e164 IN (SELECT e164 FROM patient_phones WHERE patient_id IN (OLD.patient_id, NEW.patient_id))
        AND c.started_ts <= MAX(OLD.created_ts, NEW.created_ts) + 7200
        AND c.ended_ts >= MIN(OLD.created_ts, NEW.created_ts) - 7200;
    INSERT INTO report_dirty SELECT c.started_ts, c.started_ts FROM call_candidates cc JOIN calls c ON c.id = cc.call_id
        WHERE cc.patient_id IN (OLD.patient_id, NEW.patient_id)
        AND c.started_ts <= MAX(OLD.created_ts, NEW.created_ts) + 7200
        AND c.ended_ts >= MIN(OLD.created_ts, NEW.created_ts) - 7200;
END;

CREATE TRIGGER report_appointments_delete AFTER DELETE ON appointments BEGIN
    INSERT INTO report_dirty SELECT started_ts, started_ts FROM calls WHERE linkedid = OLD.call_linkedid;
    INSERT INTO report_dirty SELECT c.started_ts, c.started_ts FROM calls c
        WHERE c.phone_e164 IN (SELECT e164 FROM patient_phones WHERE patient_id = OLD.patient_id)
        AND c.started_ts <= OLD.created_ts + 7200 AND c.ended_ts >= OLD.created_ts - 7200;
    INSERT INTO report_dirty SELECT c.started_ts, c.started_ts FROM call_candidates cc JOIN calls c ON c.id = cc.call_id
        WHERE cc.patient_id = OLD.patient_id AND c.started_ts <= OLD.created_ts + 7200
        AND c.ended_ts >= OLD.created_ts - 7200;
END;

-- the calls stored before this migration: every day they span is computed once
INSERT INTO report_dirty SELECT MIN(started_ts), MAX(started_ts) FROM calls HAVING COUNT(*) > 0;

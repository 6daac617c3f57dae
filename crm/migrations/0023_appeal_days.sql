-- «История обращений» by clinic day (crm/appeal_days.py): each day's обращения as the live
-- computation found them (JSON), with their facets for counts, totals and costs, so that a
-- month reads its facets' rows instead of grouping every contact again.
--
-- A write that can change a day's обращения forgets the days of the span it touches, here, in
-- its own transaction (the next page computes them again), and moves the epoch on: a day
-- computed from reads older than the last write is not stored. Spans: a contact's own instant;
-- an appointment or a waiting-list entry from a day before its creation to 30 min after
-- (the names in double braces are crm/rules/windows.py's constants; windows.APPOINTMENT_LINK: a record joins a contact that started at most 30 min after it or
-- ended at most 30 min before it, and no contact lasts a day: LONGEST_CONTACT); a CRM action from a day before
-- it (windows.CRM_ACTION_LINK, CANCEL_LINK: 15 min). Names and channel rules: every day.
CREATE TABLE appeal_days (
    day            TEXT PRIMARY KEY,       -- YYYY-MM-DD, the clinic's
    tz             TEXT NOT NULL,
    start_ts       REAL NOT NULL,          -- the day's first instant
    end_ts         REAL NOT NULL,          -- the next day's
    computed_for   TEXT NOT NULL,          -- the clinic's date when computed (requests fall overdue)
    version        INTEGER NOT NULL,       -- the epoch it was computed at
    size           INTEGER NOT NULL,       -- how many обращения (its facets' rows)
    contacts       INTEGER NOT NULL,       -- how many contacts they hold
    names          TEXT NOT NULL,          -- JSON: the «Кто, тип», topics and employees its contacts had
    appeals        TEXT NOT NULL           -- JSON: the обращения, read for the days a page shows
);
CREATE INDEX appeal_days_span ON appeal_days (start_ts);
-- one row an обращение: what counts, totals, costs and the filters after grouping read
CREATE TABLE appeal_facets (
    day        TEXT NOT NULL REFERENCES appeal_days (day) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,           -- its place in the day's JSON
    success    TEXT NOT NULL,
    employee   TEXT NOT NULL,
    topic      TEXT NOT NULL,
    channel    TEXT NOT NULL,
    who        TEXT NOT NULL,
    employees  TEXT NOT NULL,              -- every employee of its contacts, separated by a line feed
    contacts   INTEGER NOT NULL,
    PRIMARY KEY (day, idx)
) WITHOUT ROWID;
-- the day's обращения counted by what the page groups by (without the employee filter, a
-- period's counts, totals, costs and chart read these: a year is a hundred thousand rows)
CREATE TABLE appeal_groups (
    day        TEXT NOT NULL REFERENCES appeal_days (day) ON DELETE CASCADE,
    success    TEXT NOT NULL,
    employee   TEXT NOT NULL,
    topic      TEXT NOT NULL,
    channel    TEXT NOT NULL,
    who        TEXT NOT NULL,
    n          INTEGER NOT NULL,
    contacts   INTEGER NOT NULL
);
CREATE INDEX appeal_groups_day ON appeal_groups (day);
CREATE TABLE appeal_meta (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL);
INSERT INTO appeal_meta (id, epoch) VALUES (1, 0);

CREATE TRIGGER appeal_calls_insert AFTER INSERT ON calls BEGIN
    DELETE FROM appeal_days WHERE end_ts > NEW.started_ts AND start_ts <= NEW.started_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

-- a recording compressed (renamed) changes nothing shown
CREATE TRIGGER appeal_calls_update AFTER UPDATE ON calls
WHEN NOT (OLD.recording <> '' AND NEW.recording <> '' AND OLD.recording <> NEW.recording) BEGIN
    DELETE FROM appeal_days WHERE end_ts > OLD.started_ts AND start_ts <= OLD.started_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
    DELETE FROM appeal_days WHERE end_ts > NEW.started_ts AND start_ts <= NEW.started_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_calls_delete AFTER DELETE ON calls BEGIN
    DELETE FROM appeal_days WHERE end_ts > OLD.started_ts AND start_ts <= OLD.started_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_comments_insert AFTER INSERT ON call_comments BEGIN
    DELETE FROM appeal_days WHERE end_ts > (SELECT started_ts FROM calls WHERE linkedid = NEW.linkedid) AND start_ts <= (SELECT started_ts FROM calls WHERE linkedid = NEW.linkedid);
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_comments_delete AFTER DELETE ON call_comments BEGIN
    DELETE FROM appeal_days WHERE end_ts > (SELECT started_ts FROM calls WHERE linkedid = OLD.linkedid) AND start_ts <= (SELECT started_ts FROM calls WHERE linkedid = OLD.linkedid);
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_comments_update AFTER UPDATE ON call_comments BEGIN
    DELETE FROM appeal_days WHERE end_ts > (SELECT started_ts FROM calls WHERE linkedid = OLD.linkedid) AND start_ts <= (SELECT started_ts FROM calls WHERE linkedid = OLD.linkedid);
    UPDATE appeal_meta SET epoch = epoch + 1;
    DELETE FROM appeal_days WHERE end_ts > (SELECT started_ts FROM calls WHERE linkedid = NEW.linkedid) AND start_ts <= (SELECT started_ts FROM calls WHERE linkedid = NEW.linkedid);
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_requests_insert AFTER INSERT ON callback_requests BEGIN
    DELETE FROM appeal_days WHERE end_ts > NEW.created_ts AND start_ts <= NEW.created_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_requests_update AFTER UPDATE ON callback_requests BEGIN
    DELETE FROM appeal_days WHERE end_ts > OLD.created_ts AND start_ts <= OLD.created_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
    DELETE FROM appeal_days WHERE end_ts > NEW.created_ts AND start_ts <= NEW.created_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_requests_delete AFTER DELETE ON callback_requests BEGIN
    DELETE FROM appeal_days WHERE end_ts > OLD.created_ts AND start_ts <= OLD.created_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_replies_insert AFTER INSERT ON escort_log
WHEN NEW.what = 'reply' BEGIN
    DELETE FROM appeal_days WHERE end_ts > NEW.ts AND start_ts <= NEW.ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_replies_delete AFTER DELETE ON escort_log
WHEN OLD.what = 'reply' BEGIN
    DELETE FROM appeal_days WHERE end_ts > OLD.ts AND start_ts <= OLD.ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_appointments_insert AFTER INSERT ON appointments BEGIN
    DELETE FROM appeal_days WHERE end_ts > NEW.created_ts - {{LONGEST_CONTACT}} AND start_ts <= NEW.created_ts + {{APPOINTMENT_LINK}};
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_appointments_update AFTER UPDATE ON appointments
WHEN NOT (OLD.status IS NEW.status AND OLD.created_ts IS NEW.created_ts AND OLD.patient_id IS NEW.patient_id AND OLD.price IS NEW.price) BEGIN
    DELETE FROM appeal_days WHERE end_ts > OLD.created_ts - {{LONGEST_CONTACT}} AND start_ts <= OLD.created_ts + {{APPOINTMENT_LINK}};
    UPDATE appeal_meta SET epoch = epoch + 1;
    DELETE FROM appeal_days WHERE end_ts > NEW.created_ts - {{LONGEST_CONTACT}} AND start_ts <= NEW.created_ts + {{APPOINTMENT_LINK}};
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_appointments_delete AFTER DELETE ON appointments BEGIN
    DELETE FROM appeal_days WHERE end_ts > OLD.created_ts - {{LONGEST_CONTACT}} AND start_ts <= OLD.created_ts + {{APPOINTMENT_LINK}};
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_waiting_insert AFTER INSERT ON waiting_list BEGIN
    DELETE FROM appeal_days WHERE end_ts > ((julianday(NEW.created_at) - 2440587.5) * 86400.0) - {{LONGEST_CONTACT}} AND start_ts <= ((julianday(NEW.created_at) - 2440587.5) * 86400.0) + {{APPOINTMENT_LINK}};
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_waiting_update AFTER UPDATE ON waiting_list BEGIN
    DELETE FROM appeal_days WHERE end_ts > ((julianday(OLD.created_at) - 2440587.5) * 86400.0) - {{LONGEST_CONTACT}} AND start_ts <= ((julianday(OLD.created_at) - 2440587.5) * 86400.0) + {{APPOINTMENT_LINK}};
    UPDATE appeal_meta SET epoch = epoch + 1;
    DELETE FROM appeal_days WHERE end_ts > ((julianday(NEW.created_at) - 2440587.5) * 86400.0) - {{LONGEST_CONTACT}} AND start_ts <= ((julianday(NEW.created_at) - 2440587.5) * 86400.0) + {{APPOINTMENT_LINK}};
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_waiting_delete AFTER DELETE ON waiting_list BEGIN
    DELETE FROM appeal_days WHERE end_ts > ((julianday(OLD.created_at) - 2440587.5) * 86400.0) - {{LONGEST_CONTACT}} AND start_ts <= ((julianday(OLD.created_at) - 2440587.5) * 86400.0) + {{APPOINTMENT_LINK}};
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_actions_insert AFTER INSERT ON crm_actions BEGIN
    DELETE FROM appeal_days WHERE end_ts > NEW.at_ts - {{LONGEST_CONTACT}} AND start_ts <= NEW.at_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_actions_delete AFTER DELETE ON crm_actions BEGIN
    DELETE FROM appeal_days WHERE end_ts > OLD.at_ts - {{LONGEST_CONTACT}} AND start_ts <= OLD.at_ts;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_phones_insert AFTER INSERT ON patient_phones BEGIN
    DELETE FROM appeal_days WHERE EXISTS (SELECT 1 FROM escort_log l JOIN appointments a ON a.id = l.appointment_id WHERE a.patient_id = NEW.patient_id AND l.what = 'reply' AND l.ts >= appeal_days.start_ts AND l.ts < appeal_days.end_ts);
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_phones_update AFTER UPDATE ON patient_phones BEGIN
    DELETE FROM appeal_days WHERE EXISTS (SELECT 1 FROM escort_log l JOIN appointments a ON a.id = l.appointment_id WHERE a.patient_id = OLD.patient_id AND l.what = 'reply' AND l.ts >= appeal_days.start_ts AND l.ts < appeal_days.end_ts);
    UPDATE appeal_meta SET epoch = epoch + 1;
    DELETE FROM appeal_days WHERE EXISTS (SELECT 1 FROM escort_log l JOIN appointments a ON a.id = l.appointment_id WHERE a.patient_id = NEW.patient_id AND l.what = 'reply' AND l.ts >= appeal_days.start_ts AND l.ts < appeal_days.end_ts);
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_phones_delete AFTER DELETE ON patient_phones BEGIN
    DELETE FROM appeal_days WHERE EXISTS (SELECT 1 FROM escort_log l JOIN appointments a ON a.id = l.appointment_id WHERE a.patient_id = OLD.patient_id AND l.what = 'reply' AND l.ts >= appeal_days.start_ts AND l.ts < appeal_days.end_ts);
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channel_groups_insert AFTER INSERT ON ad_channel_groups BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channel_groups_update AFTER UPDATE ON ad_channel_groups BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channel_groups_delete AFTER DELETE ON ad_channel_groups BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channels_insert AFTER INSERT ON ad_channels BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channels_update AFTER UPDATE ON ad_channels BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channels_delete AFTER DELETE ON ad_channels BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channel_rules_insert AFTER INSERT ON ad_channel_rules BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channel_rules_update AFTER UPDATE ON ad_channel_rules BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_ad_channel_rules_delete AFTER DELETE ON ad_channel_rules BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_clinic_numbers_insert AFTER INSERT ON clinic_numbers BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_clinic_numbers_update AFTER UPDATE ON clinic_numbers BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_clinic_numbers_delete AFTER DELETE ON clinic_numbers BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_caller_groups_insert AFTER INSERT ON caller_groups BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_caller_groups_update AFTER UPDATE ON caller_groups BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_caller_groups_delete AFTER DELETE ON caller_groups BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_call_topics_insert AFTER INSERT ON call_topics BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_call_topics_update AFTER UPDATE ON call_topics BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_call_topics_delete AFTER DELETE ON call_topics BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

CREATE TRIGGER appeal_all_users_update AFTER UPDATE ON users
WHEN NOT (OLD.full_name IS NEW.full_name AND OLD.login IS NEW.login) BEGIN
    DELETE FROM appeal_days;
    UPDATE appeal_meta SET epoch = epoch + 1;
END;

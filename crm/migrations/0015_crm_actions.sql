-- What was done in the CRM and when (seed 004): a booking, a move, a status change, a task closed.
-- The history of an appointment's changes (who, when, what), and what links an outgoing call to
-- the action done within 15 minutes of it («Пациент. Задача CRM / Напоминание»), a cancel or move
-- to the contact within 15 minutes.
CREATE TABLE crm_actions (
    id              INTEGER PRIMARY KEY,
    at_ts           REAL NOT NULL,
    kind            TEXT NOT NULL,               -- booked | moved | status | task_done
    patient_id      INTEGER REFERENCES patients(id),
    appointment_id  INTEGER REFERENCES appointments(id),
    task_id         INTEGER REFERENCES tasks(id),
    user_id         INTEGER REFERENCES users(id),
    detail          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX crm_actions_patient ON crm_actions (patient_id, at_ts);
CREATE INDEX crm_actions_appointment ON crm_actions (appointment_id);

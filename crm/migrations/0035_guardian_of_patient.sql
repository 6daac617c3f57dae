-- A representative who is a patient is found by the patient's id (the import links thousands:
-- without an index each lookup scanned every guardian).
CREATE INDEX IF NOT EXISTS guardians_patient ON guardians (patient_id);

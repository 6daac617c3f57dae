-- Seed 000: calls that come through some clinic numbers (an aggregator such as ProDoctorov)
-- are shown without the caller's number, even when the patient is in the database.
ALTER TABLE clinic_numbers ADD COLUMN hide_caller INTEGER NOT NULL DEFAULT 0;

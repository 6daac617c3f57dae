-- The website callback robot per branch: a source belongs to a branch (its requests are the
-- branch's), and each branch has its own robot settings (clinic_settings key "callback:<id>",
-- falling back to the clinic's "callback").
ALTER TABLE callback_sources ADD COLUMN branch_id INTEGER REFERENCES branches(id);
CREATE INDEX callback_requests_branch ON callback_requests (branch_id);

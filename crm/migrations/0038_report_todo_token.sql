-- The reports' days are recomputed beside the one writer (crm/call_stats.py): read from a
-- snapshot, then stored in a short transaction. A day marked again while it was being read gets
-- a new token; a store whose token no longer matches is dropped (the newer reading stores it).
ALTER TABLE report_days_todo ADD COLUMN token INTEGER NOT NULL DEFAULT 0;

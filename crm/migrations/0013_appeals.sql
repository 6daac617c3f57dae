-- «История обращений» reads a period's calls by their start time.
CREATE INDEX calls_started_ts ON calls (started_ts);

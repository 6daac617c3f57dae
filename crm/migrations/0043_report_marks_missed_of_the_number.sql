-- An answered call processes the missed calls of its own number in the day before it
-- (call_listing.ANSWERED_AFTER): it marks the span from the first such missed call, not the
-- whole day before (#31: under steady traffic every report and the home page recomputed
-- yesterday beside today at each view, ~100 ms at 1M calls). A call whose number missed no
-- call in that day marks its own instant only. Updates and deletes keep the wide span.
DROP TRIGGER IF EXISTS report_calls_insert;

CREATE TRIGGER report_calls_insert AFTER INSERT ON calls BEGIN
    INSERT INTO report_dirty VALUES (NEW.started_ts, NEW.started_ts);
    INSERT INTO report_dirty SELECT MIN(m.started_ts), NEW.started_ts FROM calls m
        WHERE NEW.answered_at IS NOT NULL AND m.phone_e164 = NEW.phone_e164 AND m.call_type = 'missed'
        AND m.started_ts >= NEW.started_ts - {{MISSED_CALL_PROCESSING}} AND m.started_ts < NEW.started_ts
        HAVING COUNT(*) > 0;
END;

-- A phone in the browser (issue #34): a desk_phones row whose endpoint is a user's browser
-- (WebRTC over the panel's WebSocket). Its owner; NULL for a desk phone.
ALTER TABLE desk_phones ADD COLUMN browser_user_id INTEGER;

-- The clinic's numbers route themselves (issue #29): each number names the queue its calls ring,
-- its working hours and what a call outside them gets; Asterisk's routing ([clinic-numbers]) is
-- rendered from these rows, not written in the shipped dialplan. The demo's second number rings
-- its phones in order, as it always did.
ALTER TABLE clinic_numbers ADD COLUMN queue TEXT NOT NULL DEFAULT 'reception-ringall';
-- "пн-пт 09:00-20:00; сб 10:00-15:00" (crm.rules.hours); '' = always open
ALTER TABLE clinic_numbers ADD COLUMN hours TEXT NOT NULL DEFAULT '';
ALTER TABLE clinic_numbers ADD COLUMN holidays TEXT NOT NULL DEFAULT '';      -- "31.12.2026, 01.01.2027"
ALTER TABLE clinic_numbers ADD COLUMN closed_message TEXT NOT NULL DEFAULT ''; -- spoken by the robots' TTS
ALTER TABLE clinic_numbers ADD COLUMN closed_mobile TEXT NOT NULL DEFAULT '';  -- forward there (digits)
ALTER TABLE clinic_numbers ADD COLUMN closed_callback INTEGER NOT NULL DEFAULT 0; -- the caller becomes a callback request
UPDATE clinic_numbers SET queue = 'reception-linear' WHERE did = '74951110002';
UPDATE telephony_revision SET revision = revision + 1;

-- How a provider wants the numbers it dials (issue #29): 7XXXXXXXXXX, 8XXXXXXXXXX or +7XXXXXXXXXX.
ALTER TABLE sip_providers ADD COLUMN dial_format TEXT NOT NULL DEFAULT '7';
UPDATE telephony_revision SET revision = revision + 1;

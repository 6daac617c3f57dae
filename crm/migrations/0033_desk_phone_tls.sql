-- A desk phone may talk encrypted (issue #30): SIP over TLS and SRTP media (SDES), chosen per
-- phone in the panel; rendered with transport-tls and media_encryption = sdes.
ALTER TABLE desk_phones ADD COLUMN secure INTEGER NOT NULL DEFAULT 0;

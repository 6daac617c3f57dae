-- Desk phones set up in the panel (issue #29): each one's SIP account and the queues it rings in.
-- Only the digest hash is kept (md5 of "extension:realm:password", what Asterisk's md5 auth
-- checks): the password itself is shown once, when it is made. A phone without one is a demo
-- phone of the shipped configuration (asterisk-config/pjsip.conf).
ALTER TABLE desk_phones ADD COLUMN md5_cred TEXT NOT NULL DEFAULT '';
-- the queue names it rings in, comma-separated
ALTER TABLE desk_phones ADD COLUMN queues TEXT NOT NULL DEFAULT '';

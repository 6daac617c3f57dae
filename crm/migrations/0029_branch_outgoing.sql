-- Outgoing calls per branch (issue #29): the provider a branch's desk phones call out by and
-- the clinic number patients see from them. NULL / '' = the clinic's outgoing provider and the
-- server's asterisk.outbound_line.
ALTER TABLE branches ADD COLUMN out_provider_id INTEGER;
ALTER TABLE branches ADD COLUMN out_line TEXT NOT NULL DEFAULT '';
-- A chain: a provider's account registers from its branch's box only (NULL: every box), so two
-- boxes never fight over one registration.
ALTER TABLE sip_providers ADD COLUMN branch_id INTEGER;
UPDATE telephony_revision SET revision = revision + 1;

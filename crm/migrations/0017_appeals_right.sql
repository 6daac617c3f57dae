-- The right «История обращений» (seed 004), apart from the call history's: administrators and
-- directors get it by default (crm.users.create_user), settings admins when granted. Existing
-- accounts keep seeing the report they saw.
ALTER TABLE users ADD COLUMN appeals_access INTEGER NOT NULL DEFAULT 1

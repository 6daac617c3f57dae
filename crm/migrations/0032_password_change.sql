-- A password an admin set (a new user's, a reset) is a one-time password (issue #30): its user
-- must choose their own at the next login, so no admin knows anybody's password for long.
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;

-- A letter's sender: the branch's own address (the callback robot's settings), or the server's.
ALTER TABLE mail_outbox ADD COLUMN from_addr TEXT NOT NULL DEFAULT '';

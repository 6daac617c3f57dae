-- What a contact entered by hand is (seed 004): «comment» (a talk that bypassed the PBX,
-- entered with «Добавить комментарий к разговору» and joined to no call: deletable) or «dialog»
-- («Диалог»: a finished talk needing nothing more). Earlier manual entries were dialogs.
ALTER TABLE calls ADD COLUMN manual_kind TEXT NOT NULL DEFAULT '';
UPDATE calls SET manual_kind = 'dialog' WHERE source = 'manual'

-- A «Диалог» entered by hand says where it took place (seed 004: «написал во «ВКонтакте», а потом
-- позвонил»; a chat «скопированного из социальной сети»): ВКонтакте, WhatsApp, Telegram… Its
-- name is the contact's service, so a channel rule on «Внешние сервисы» can find it (#32).
ALTER TABLE calls ADD COLUMN manual_channel TEXT NOT NULL DEFAULT '';

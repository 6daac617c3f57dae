-- Auto-provisioning of the desk phones set up in the panel (issue #29): the phone's SIP password
-- sealed with the installation's key (secrets.json, never here: crm/secret_box.py), and the
-- sha256 of its secret provisioning URL's token (the URL is shown once, like the password).
ALTER TABLE desk_phones ADD COLUMN sealed_password TEXT NOT NULL DEFAULT '';
ALTER TABLE desk_phones ADD COLUMN provision_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE desk_phones ADD COLUMN provisioned_at REAL;

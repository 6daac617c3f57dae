-- SIP scanners banned (issue #30): an address that failed Asterisk's authentication too often is
-- refused by a PJSIP ACL (rendered into pjsip_clinic.conf) until until_ts; the panel lists and
-- lifts them.
CREATE TABLE sip_bans (
    address     TEXT PRIMARY KEY,
    until_ts    REAL NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created_ts  REAL NOT NULL
);

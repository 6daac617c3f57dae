-- The clinic's SIP providers (trunks), set up in the panel (issue #29) and rendered into
-- Asterisk's configuration by pure functions; Asterisk sees each one as the endpoint trunk-<id>.
-- telephony_revision counts changes: a box applies a revision and says so only after Asterisk
-- confirms it.
CREATE TABLE sip_providers (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,           -- the panel's name, never written into a config
    server          TEXT NOT NULL,                  -- host name or address
    port            INTEGER NOT NULL DEFAULT 5060,
    transport       TEXT NOT NULL DEFAULT 'udp',    -- udp | tcp
    auth            TEXT NOT NULL DEFAULT 'register', -- register | ip
    login           TEXT NOT NULL DEFAULT '',
    password        TEXT NOT NULL DEFAULT '',
    auth_user       TEXT NOT NULL DEFAULT '',       -- when it differs from the login
    from_user       TEXT NOT NULL DEFAULT '',
    from_domain     TEXT NOT NULL DEFAULT '',
    outbound_proxy  TEXT NOT NULL DEFAULT '',
    expiry          INTEGER NOT NULL DEFAULT 300,
    retry           INTEGER NOT NULL DEFAULT 30,
    addresses       TEXT NOT NULL DEFAULT '',       -- the provider's addresses, one per line
    did_from        TEXT NOT NULL DEFAULT 'ruri',   -- ruri | to | a header's name
    codecs          TEXT NOT NULL DEFAULT 'alaw,ulaw',
    dtmf            TEXT NOT NULL DEFAULT 'rfc4733',
    max_calls       INTEGER NOT NULL DEFAULT 0,     -- 0: no cap
    qualify         INTEGER NOT NULL DEFAULT 0,     -- OPTIONS every 60 s (a provider by address: its status)
    outgoing        INTEGER NOT NULL DEFAULT 0,     -- outgoing calls leave by this provider
    enabled         INTEGER NOT NULL DEFAULT 1,
    updated_at      REAL NOT NULL DEFAULT 0
);
CREATE TABLE telephony_revision (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO telephony_revision (id, revision) VALUES (1, 0);

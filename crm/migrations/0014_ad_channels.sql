-- Advertising channels (seed 004): a directory of channels in groups, and the rules that tell
-- which channel brought a contact, checked by priority: UTM tags, then the caller's number,
-- then the clinic number called, then the service (a request's source, a number's label).
CREATE TABLE ad_channel_groups (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE
);
CREATE TABLE ad_channels (
    id        INTEGER PRIMARY KEY,
    group_id  INTEGER NOT NULL REFERENCES ad_channel_groups(id),
    name      TEXT NOT NULL UNIQUE
);
CREATE TABLE ad_channel_rules (
    id          INTEGER PRIMARY KEY,
    channel_id  INTEGER NOT NULL REFERENCES ad_channels(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,              -- utm | caller | did | service
    value       TEXT NOT NULL,              -- utm: key=value, caller: +7... or a prefix ending in *, did, service name
    position    INTEGER NOT NULL DEFAULT 0  -- order within its kind
);

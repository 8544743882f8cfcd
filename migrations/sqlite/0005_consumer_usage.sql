-- Consumers (api_keys labels) and their keys: counts per UTC day, when each key
-- was last used, and the key.expiring notices already sent (see the PostgreSQL
-- migration 0011 for the same tables).

-- label '' holds the 401s that name no known key; `requests` are the ones
-- admitted (what the quota counts).
CREATE TABLE consumer_usage (
    day          INTEGER NOT NULL,          -- days since 1970-01-01, UTC
    tenant       TEXT    NOT NULL,
    label        TEXT    NOT NULL,
    requests     INTEGER NOT NULL DEFAULT 0,
    limited      INTEGER NOT NULL DEFAULT 0, -- refused with 429 (rate or quota)
    unauthorized INTEGER NOT NULL DEFAULT 0, -- answered 401
    PRIMARY KEY (day, tenant, label)
) WITHOUT ROWID;

-- key_id '' stands for a label's keys without ids.
CREATE TABLE key_usage (
    tenant       TEXT    NOT NULL,
    label        TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    last_used_at INTEGER NOT NULL,          -- microseconds since the epoch
    PRIMARY KEY (tenant, label, key_id)
) WITHOUT ROWID;

CREATE TABLE key_notices (
    tenant     TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    sent_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, key_id, expires_at)
) WITHOUT ROWID;

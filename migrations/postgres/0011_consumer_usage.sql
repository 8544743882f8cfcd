-- Consumers (api_keys labels) and their keys: counts per UTC day, when each key
-- was last used, and the key.expiring notices already sent. Written by every
-- node about once a second (added to, never overwritten), so that a daily quota
-- holds across the nodes.

-- One row per tenant, label and UTC day; label '' holds the 401s that name no
-- known key. `requests` are the ones admitted (what the quota counts).
CREATE TABLE consumer_usage (
    day          integer NOT NULL,          -- days since 1970-01-01, UTC
    tenant       text    NOT NULL,
    label        text    NOT NULL,
    requests     bigint  NOT NULL DEFAULT 0,
    limited      bigint  NOT NULL DEFAULT 0, -- refused with 429 (rate or quota)
    unauthorized bigint  NOT NULL DEFAULT 0, -- answered 401
    PRIMARY KEY (day, tenant, label)
);

-- The last use of each key; key_id '' stands for a label's keys without ids.
CREATE TABLE key_usage (
    tenant       text   NOT NULL,
    label        text   NOT NULL,
    key_id       text   NOT NULL,
    last_used_at bigint NOT NULL,            -- microseconds since the epoch
    PRIMARY KEY (tenant, label, key_id)
);

-- A key.expiring event sent for a key and its expiry: one insert decides,
-- across nodes and restarts, that it is sent once. A new expiry is a new row.
CREATE TABLE key_notices (
    tenant     text   NOT NULL,
    key_id     text   NOT NULL,
    expires_at bigint NOT NULL,
    sent_at    bigint NOT NULL,
    PRIMARY KEY (tenant, key_id, expires_at)
);

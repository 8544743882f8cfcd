-- The operators' view: log history queries, replays and outbound event deliveries.

-- A replay is a new message that points at the one it repeats.
ALTER TABLE messages ADD COLUMN replay_of UUID;

-- Log history of one trigger, newest first, paged by id (UUIDv7: time order);
-- time ranges are id ranges on the same index.
CREATE INDEX messages_trigger ON messages (tenant, trigger, id);
-- The same, filtered by status; also serves the counts by status.
CREATE INDEX messages_trigger_status ON messages (tenant, trigger, status, id);
-- The same, filtered by lane (ordered triggers only).
CREATE INDEX messages_trigger_lane ON messages (tenant, trigger, lane, id) WHERE lane IS NOT NULL;
-- The blocked lanes: the few finished messages that hold their ordered lane.
CREATE INDEX messages_blocking ON messages (seq) WHERE blocking AND lane IS NOT NULL;

-- One row per event sent (or to send) to one subscription. The payload is the exact
-- body that is signed; every attempt is kept in `attempt_log`.
CREATE TABLE deliveries (
    id           UUID    PRIMARY KEY,               -- UUIDv7, also the event id in the payload
    tenant       TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    message_id   UUID,
    created_at   BIGINT  NOT NULL,                  -- microseconds since the epoch
    status       TEXT    NOT NULL,                  -- pending | succeeded | failed
    next_at      BIGINT  NOT NULL,                  -- when the next attempt is due (or a sender's lease ends)
    attempts     INTEGER NOT NULL DEFAULT 0,
    attempt_log  JSONB   NOT NULL DEFAULT '[]',     -- [{number, at, status, headers, body, error}]
    payload      TEXT    NOT NULL
);

-- The senders (one per node) take the due deliveries.
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
-- The delivery log of a tenant (and subscription), newest first.
CREATE INDEX deliveries_tenant ON deliveries (tenant, subscription, id);

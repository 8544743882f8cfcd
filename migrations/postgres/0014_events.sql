-- The event outbox: flowgate's own events and the business events flows emit,
-- written in the same transaction as the state change that causes them (an
-- execution's end, a lane let go). A fan-out task on any node turns each row
-- into one delivery per matching subscription and deletes it, in one
-- transaction (the DELETE locks the row, so two nodes never fan it out twice).
CREATE TABLE events (
    id         UUID    PRIMARY KEY,      -- UUIDv7: the outbox is read in creation order
    tenant     TEXT    NOT NULL,
    trigger    TEXT,
    event      TEXT    NOT NULL,         -- message.succeeded, lane.blocked, order.created, ...
    message_id UUID,
    created_at BIGINT  NOT NULL,         -- microseconds since the epoch
    data       TEXT                      -- an emitted event's data (JSON text)
);

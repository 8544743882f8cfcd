-- The event outbox: flowgate's own events and the business events flows emit,
-- written in the same transaction as the state change that causes them (an
-- execution's end, a lane let go). A fan-out task turns each row into one
-- delivery per matching subscription and deletes it, in one transaction, so an
-- event is neither lost nor fanned out twice across a crash.
CREATE TABLE events (
    id         TEXT    PRIMARY KEY,      -- UUIDv7: the outbox is read in creation order
    tenant     TEXT    NOT NULL,
    trigger    TEXT,
    event      TEXT    NOT NULL,         -- message.succeeded, lane.blocked, order.created, ...
    message_id TEXT,
    created_at INTEGER NOT NULL,         -- microseconds since the epoch
    data       TEXT                      -- an emitted event's data (JSON text)
) WITHOUT ROWID;

-- Every accepted message: its state in the queue and its record for the log history.
-- One row per message; its attempts are a JSON array in the row, so recording an
-- execution is a single row write.
CREATE TABLE messages (
    seq             INTEGER PRIMARY KEY,                -- acceptance order (rowid)
    id              TEXT    NOT NULL UNIQUE,            -- UUIDv7: sorts by creation time
    tenant          TEXT    NOT NULL,
    trigger         TEXT    NOT NULL,
    lane            TEXT,                               -- NULL: unordered
    mode            TEXT    NOT NULL,                   -- sync | async
    status          TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,                   -- microseconds since the epoch
    run_at          INTEGER NOT NULL,                   -- not before (retry schedule)
    attempts        INTEGER NOT NULL DEFAULT 0,
    attempt_log     TEXT    NOT NULL DEFAULT '[]',      -- [{number, started_at, finished_at, outcome, error}]
    finished_at     INTEGER,
    idempotency_key TEXT,
    blocking        INTEGER NOT NULL DEFAULT 0,         -- 1: a finished message holding its ordered lane
    open            INTEGER NOT NULL DEFAULT 1,         -- 1: unfinished, or blocking its lane
    input           TEXT    NOT NULL,
    response        TEXT,
    trace           TEXT,
    error           TEXT
);

-- Idempotency-Key is unique per trigger while the message is retained.
CREATE UNIQUE INDEX messages_idempotency
    ON messages (tenant, trigger, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Recovery reads the open messages in acceptance order. (A flag rather than a
-- predicate on status: SQLite evaluates an IN list with a temporary table, on
-- every write of a row.)
CREATE INDEX messages_open ON messages (seq) WHERE open = 1;

-- Time ranges and retention use the UNIQUE index on id (UUIDv7 ids sort by time).

-- Every accepted message: its state in the queue, its lease while a node runs it,
-- and its record for the log history. Times are microseconds since the epoch.
CREATE TABLE messages (
    seq             BIGSERIAL PRIMARY KEY,          -- acceptance order (per lane: commit order)
    id              UUID    NOT NULL UNIQUE,        -- UUIDv7
    tenant          TEXT    NOT NULL,
    trigger         TEXT    NOT NULL,
    lane            TEXT,                           -- NULL: unordered
    mode            TEXT    NOT NULL,               -- sync | async
    status          TEXT    NOT NULL,
    received_at     BIGINT  NOT NULL,
    run_at          BIGINT  NOT NULL,               -- not before (retry schedule)
    attempts        INTEGER NOT NULL DEFAULT 0,
    attempt_log     JSONB   NOT NULL DEFAULT '[]',  -- [{number, started_at, finished_at, outcome, error}]
    finished_at     BIGINT,
    idempotency_key TEXT,
    blocking        BOOLEAN NOT NULL DEFAULT FALSE, -- a finished message holding its ordered lane
    holder          TEXT,                           -- the node running it (unordered messages)
    lease_until     BIGINT,                         -- the holder's lease; past it another node may take over
    input           TEXT    NOT NULL,
    response        TEXT,
    trace           TEXT,
    error           TEXT
);

-- Idempotency-Key is unique per trigger while the message is retained.
CREATE UNIQUE INDEX messages_idempotency
    ON messages (tenant, trigger, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Claiming unordered work: unfinished messages without a lane, in acceptance order.
CREATE INDEX messages_unordered ON messages (seq) WHERE lane IS NULL AND finished_at IS NULL;

-- A lane's unfinished messages in acceptance order (the lane holder reads its head).
CREATE INDEX messages_lane ON messages (tenant, trigger, lane, seq) WHERE finished_at IS NULL;

-- Recovery and heartbeats: what a node holds.
CREATE INDEX messages_held ON messages (holder) WHERE status = 'running';

-- Retention: finished messages by age (blocking ones are kept).
CREATE INDEX messages_finished ON messages (received_at) WHERE finished_at IS NOT NULL AND NOT blocking;

-- One row per ordered lane. A node runs a lane's messages only while it holds the
-- lane's lease; `epoch` grows with every claim, and a result is written only by the
-- holder of the current epoch. Enqueuing locks the row first, so within a lane the
-- order of `seq` is the order of commits.
CREATE TABLE lanes (
    tenant      TEXT    NOT NULL,
    trigger     TEXT    NOT NULL,
    lane        TEXT    NOT NULL,
    pending     BIGINT  NOT NULL DEFAULT 0,     -- unfinished messages
    run_at      BIGINT  NOT NULL DEFAULT 0,     -- not before (the head's retry)
    blocked_by  UUID,                           -- a failed message holding the lane
    holder      TEXT,
    epoch       BIGINT  NOT NULL DEFAULT 0,
    lease_until BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, trigger, lane)
);

-- Claiming lanes: those with work, not blocked, by due time.
CREATE INDEX lanes_ready ON lanes (run_at) WHERE pending > 0 AND blocked_by IS NULL;

-- Event subscriptions made through the admin API (those of `_tenant.yaml` live in
-- the files). What a subscription is, besides its name, is one JSON document
-- (`spec`): url, events, triggers, auth, secret, include, retry, enabled.
CREATE TABLE subscriptions (
    id         UUID   PRIMARY KEY,       -- UUIDv7
    tenant     TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    spec       JSONB  NOT NULL,
    created_at BIGINT NOT NULL,          -- microseconds since the epoch
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant, name)
);

-- One more on every change to `subscriptions`: each node reads it every second
-- and reads the subscriptions again when it moved.
CREATE TABLE subscription_version (value BIGINT NOT NULL);
INSERT INTO subscription_version (value) VALUES (0);

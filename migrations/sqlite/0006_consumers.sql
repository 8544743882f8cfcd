-- Who sent each message: the consumer's label (an API key's label in
-- _tenant.yaml, or the HTTP Basic user) and, for keys of the form
-- `fg_<id>_<secret>`, the key's id. NULL for open triggers and HMAC-signed calls,
-- and for messages stored before this migration.
ALTER TABLE messages ADD COLUMN consumer TEXT;
ALTER TABLE messages ADD COLUMN key_id TEXT;

-- Log history of one trigger filtered by consumer, newest first. Only messages
-- with a consumer have an entry, written once when the message is stored (SQLite
-- updates an index only when its columns change, and these never do).
CREATE INDEX messages_trigger_consumer ON messages (tenant, trigger, consumer, id)
    WHERE consumer IS NOT NULL;

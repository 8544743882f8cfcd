-- Who sent each message: the consumer's label (an API key's label in
-- _tenant.yaml, or the HTTP Basic user) and, for keys of the form
-- `fg_<id>_<secret>`, the key's id. NULL for open triggers and HMAC-signed calls,
-- and for messages stored before this migration. Adding nullable columns
-- without a default rewrites nothing.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS consumer TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS key_id TEXT;

-- Log history of one trigger filtered by consumer, newest first. Only messages
-- with a consumer have an entry. Built CONCURRENTLY is not possible inside the
-- migration's transaction: on a large table this migration takes a while, with
-- writes to `messages` waiting for it.
CREATE INDEX IF NOT EXISTS messages_trigger_consumer ON messages (tenant, trigger, consumer, id)
    WHERE consumer IS NOT NULL;

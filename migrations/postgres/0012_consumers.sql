-- Who sent each message: the consumer's label (an API key's label in
-- _tenant.yaml, or the HTTP Basic user) and, for keys of the form
-- `fg_<id>_<secret>`, the key's id. NULL for open triggers and HMAC-signed calls,
-- and for messages stored before this migration. Nullable columns without a
-- default are added without rewriting the table.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS consumer TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS key_id TEXT;

-- Log history of one trigger filtered by consumer, newest first. Like
-- `messages_trigger_status` (migration 9) it leaves running messages out: a
-- message accepted for this node is stored running, so it enters the index once,
-- when it ends, not also when it is stored (an end is never a HOT update). The
-- log history reads running messages from `messages_lane`. Messages without a
-- consumer (open triggers, HMAC) have no entry. On a large table this migration
-- takes a while, with writes to `messages` waiting for it.
CREATE INDEX IF NOT EXISTS messages_trigger_consumer ON messages (tenant, trigger, consumer, id)
    WHERE consumer IS NOT NULL AND status <> 'running';
